"""`HourglassConfig`: what shapes a stacked hourglass, as plain data (no torch), so that engines and the CLI can
read a model's config without importing the network."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

HEADS = ("heatmaps", "centernet")


@dataclass(frozen=True)
class HourglassConfig:
    """Everything that shapes the network. Stored verbatim in checkpoints and engine metadata."""

    stacks: int = 2
    features: int = 256
    joints: int = 16
    input_size: int = 256
    depth: int = 4
    stem: int = 128
    """Width of the stem's residuals (its first conv has half): the paper's 128. A detector that sees the whole
    frame at 256 px narrows it, since the stem at full resolution is most of the work."""
    head: str = "heatmaps"
    """`heatmaps`: one heatmap per joint (pose). `centernet`: per class a centre heatmap (logits), then box
    width and height (log heatmap pixels) and the centre's sub-pixel offset (Zhou et al. 2019, "Objects as
    Points"), so a person detector is the same network family, run through the same engines."""

    def __post_init__(self) -> None:
        if self.stacks < 1 or self.depth < 1 or self.joints < 1:
            raise ValueError(f"stacks, depth and joints must be >= 1, got {self}")
        if self.features < 2 or self.features % 2:
            raise ValueError(f"features must be an even number >= 2, got {self.features}")
        if self.stem < 4 or self.stem % 4:
            raise ValueError(f"stem must be a multiple of 4, got {self.stem}")
        if self.head not in HEADS:
            raise ValueError(f"head must be one of {', '.join(HEADS)}, got {self.head!r}")
        # stem downsamples by 4, each hourglass level by 2 more
        multiple = 4 * 2**self.depth
        if self.input_size % multiple:
            raise ValueError(
                f"input_size {self.input_size} must be a multiple of {multiple} for depth {self.depth}"
            )

    @property
    def heatmap_size(self) -> int:
        """Side of the output heatmaps: the stem reduces the input by a stride of 4."""
        return self.input_size // 4

    @property
    def stride(self) -> int:
        return 4

    @property
    def outputs(self) -> int:
        """Output channels: a heatmap per joint, or per class a centre heatmap plus 4 box channels."""
        return self.joints + 4 if self.head == "centernet" else self.joints

    def to_dict(self) -> dict[str, int | str]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HourglassConfig:
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown HourglassConfig fields: {sorted(unknown)}")
        head = str(d.get("head", cls.head))
        return cls(**{k: int(v) for k, v in d.items() if k != "head"}, head=head)
