"""Frames -> network input: one warp per frame straight to the crop, then normalisation."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from streampose.geometry import warp_image

F32 = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Normalization:
    """How a crop's pixels become network input: channel order, then (x/255 - mean) / std.

    Stored in every checkpoint and engine so the runtime never guesses it.
    """

    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    rgb: bool = True  # the network sees RGB; frames arrive BGR (OpenCV's order)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Normalization:
        return cls(mean=tuple(map(float, d["mean"])), std=tuple(map(float, d["std"])), rgb=bool(d["rgb"]))  # type: ignore[arg-type]

    def apply(self, crops: npt.NDArray[np.uint8]) -> F32:
        """(N, H, W, 3) uint8 BGR crops -> (N, 3, H, W) float32 network input."""
        x = crops[..., ::-1] if self.rgb else crops
        scale = np.float32(1.0 / 255.0)
        mean = np.asarray(self.mean, dtype=np.float32)
        inv_std = 1.0 / np.asarray(self.std, dtype=np.float32)
        out = (x.astype(np.float32) * scale - mean) * inv_std
        return np.ascontiguousarray(out.transpose(0, 3, 1, 2))


def to_bgr(frame: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """Accept greyscale (H, W) / (H, W, 1) and BGRA frames as well as BGR."""
    if frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] == 1):
        return np.asarray(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR), dtype=np.uint8)
    if frame.ndim == 3 and frame.shape[2] == 4:
        return np.asarray(cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR), dtype=np.uint8)
    if frame.ndim == 3 and frame.shape[2] == 3:
        return frame
    raise ValueError(f"expected an (H, W), (H, W, 3) or (H, W, 4) image, got shape {frame.shape}")


def preprocess(
    frames: list[npt.NDArray[np.uint8]], transforms: npt.ArrayLike, size: int, norm: Normalization
) -> F32:
    """Crop each frame through its image->crop transform (N, 2, 3) and normalise: (N, 3, S, S)."""
    m = np.asarray(transforms, dtype=np.float64)
    if len(frames) != len(m):
        raise ValueError(f"{len(frames)} frames but {len(m)} transforms")
    crops = np.stack([warp_image(to_bgr(f), t, size) for f, t in zip(frames, m, strict=True)])
    return norm.apply(crops)
