"""The stacked hourglass network (Newell, Yang and Deng, ECCV 2016), in the original Torch7 layout.

Every block below mirrors `umich-vl/pose-hg-train` (`src/models/hg.lua`, `layers/Residual.lua`)
so that the parameter counts match the reference exactly (3,426,448 / 6,570,400 / 12,858,304 /
25,434,112 for 1 / 2 / 4 / 8 stacks with 16 joints, 256 features, 256 px).

Weight initialisation: PyTorch's defaults, which equal Torch7's: every convolution's weight and
bias are drawn from U(-1/sqrt(fan_in), 1/sqrt(fan_in)); batch-norm scales start at 1 and shifts
at 0. Training from scratch with RMSprop works from this start, as in the paper.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from streampose.model.config import HourglassConfig

CENTER_PRIOR = -2.19
"""Initial bias of a centre heatmap: sigmoid(-2.19) = 0.1, CenterNet's start for focal-loss training."""


def conv_bn_relu(c_in: int, c_out: int) -> nn.Sequential:
    """The reference's `lin`: 1x1 conv, batch norm, ReLU."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class Residual(nn.Module):
    """Pre-activation bottleneck: BN-ReLU-1x1(C/2)-BN-ReLU-3x3-BN-ReLU-1x1(C), plus a skip.

    The skip is the identity, or a 1x1 conv when the channel count changes.
    """

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        mid = c_out // 2
        self.body = nn.Sequential(
            nn.BatchNorm2d(c_in),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_in, mid, 1),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, mid, 3, padding=1),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, c_out, 1),
        )
        self.skip: nn.Module = nn.Identity() if c_in == c_out else nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.skip(x) + self.body(x)
        return out


class Hourglass(nn.Module):
    """One hourglass of the given depth: upper branch at this resolution, lower branch at half."""

    def __init__(self, depth: int, features: int) -> None:
        super().__init__()
        self.up = Residual(features, features)
        self.down = nn.Sequential(nn.MaxPool2d(2, 2), Residual(features, features))
        self.inner: nn.Module = (
            Hourglass(depth - 1, features) if depth > 1 else Residual(features, features)
        )
        self.out = Residual(features, features)
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.up(x) + self.upsample(self.out(self.inner(self.down(x))))
        return out


class Stem(nn.Module):
    """7x7/2 conv, BN, ReLU, Residual W/2->W, 2x2 max-pool, Residual W->W, Residual W->F (W = 128 in the paper)."""

    def __init__(self, features: int, width: int = 128) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(3, width // 2, 7, stride=2, padding=3),
            nn.BatchNorm2d(width // 2),
            nn.ReLU(inplace=True),
            Residual(width // 2, width),
            nn.MaxPool2d(2, 2),
            Residual(width, width),
            Residual(width, features),
        )

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.layers(x)
        return out


class Stack(nn.Module):
    """Hourglass -> Residual -> lin -> 1x1 conv to the outputs (K heatmaps, or CenterNet's maps; no sigmoid)."""

    def __init__(self, cfg: HourglassConfig) -> None:
        super().__init__()
        f = cfg.features
        self.features = nn.Sequential(Hourglass(cfg.depth, f), Residual(f, f), conv_bn_relu(f, f))
        self.heatmaps = nn.Conv2d(f, cfg.outputs, 1)
        if cfg.head == "centernet":
            assert self.heatmaps.bias is not None
            with torch.no_grad():
                self.heatmaps.bias[: cfg.joints].fill_(CENTER_PRIOR)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        feats = self.features(x)
        return feats, self.heatmaps(feats)


class Merge(nn.Module):
    """Feeds one stack's features and predictions into the next: x + 1x1(feats) + 1x1(heatmaps)."""

    def __init__(self, cfg: HourglassConfig) -> None:
        super().__init__()
        self.from_features = nn.Conv2d(cfg.features, cfg.features, 1)
        self.from_heatmaps = nn.Conv2d(cfg.outputs, cfg.features, 1)

    def forward(self, x: Tensor, feats: Tensor, heatmaps: Tensor) -> Tensor:
        out: Tensor = x + self.from_features(feats) + self.from_heatmaps(heatmaps)
        return out


class StackedHourglass(nn.Module):
    """The network. Takes (N, 3, S, S) normalised crops, gives (N, K, S/4, S/4) heatmaps (`cfg.outputs`
    channels: with the `centernet` head, a detector's maps).

    In training mode `forward` returns a list with every stack's heatmaps (intermediate
    supervision); in eval mode (inference, export) it returns only the last stack's.
    """

    def __init__(self, cfg: HourglassConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.stem = Stem(cfg.features, cfg.stem)
        self.stacks = nn.ModuleList(Stack(cfg) for _ in range(cfg.stacks))
        # weights are not shared across stacks; the last stack has nothing to merge into
        self.merges = nn.ModuleList(Merge(cfg) for _ in range(cfg.stacks - 1))

    def forward_all(self, x: Tensor) -> list[Tensor]:
        """Every stack's heatmaps, first to last, whatever the mode."""
        x = self.stem(x)
        outputs: list[Tensor] = []
        for i, stack in enumerate(self.stacks):
            feats, heatmaps = stack(x)
            outputs.append(heatmaps)
            if i < len(self.merges):
                x = self.merges[i](x, feats, heatmaps)
        return outputs

    def forward(self, x: Tensor) -> Tensor | list[Tensor]:
        outputs = self.forward_all(x)
        return outputs if self.training else outputs[-1]


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters (batch-norm running statistics are buffers and do not count)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def conv_macs(cfg: HourglassConfig) -> int:
    """Multiply-accumulates of every convolution for one input, measured by tracing shapes."""
    model = StackedHourglass(cfg).eval()
    total = 0

    def hook(mod: nn.Module, _inp: Any, out: Tensor) -> None:
        nonlocal total
        assert isinstance(mod, nn.Conv2d)
        kh, kw = mod.kernel_size
        total += out.numel() * (mod.in_channels // mod.groups) * kh * kw

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        model(torch.zeros(1, 3, cfg.input_size, cfg.input_size))
    for h in handles:
        h.remove()
    return total

