"""Start a wide hourglass from a trained narrow one (Net2WiderNet, Chen, Goodfellow and Shlens, ICLR 2016).

Every tensor that is `features` (or `features / 2`) channels wide in the narrow network becomes a
tiled copy `[x, x, ...]` in the wide one: a layer's output channel j copies the narrow layer's channel
j mod C, and a layer reading a tiled tensor divides its input weights by the tiling factor, so the sum
is unchanged. Batch norm, ReLU, pooling, upsampling and the residual additions act per channel and
keep the tiling, so the wide network computes exactly the narrow one's heatmaps. Where the narrow
network has an identity skip and the wide one a 1x1 convolution (the stem's last residual, 128 ->
features), that convolution is set to the tiled identity.

Copies of a channel would receive identical gradients forever, so a little noise (a fraction of each
weight tensor's standard deviation) is added to the widened convolutions to let them drift apart.
"""

from __future__ import annotations

import torch
from torch import Tensor

from streampose.model import HourglassConfig, StackedHourglass


def widen(narrow: dict[str, Tensor], small: HourglassConfig, big: HourglassConfig, noise: float = 0.03,
          seed: int = 0) -> dict[str, Tensor]:
    """The state dict of a `big` network that computes what `narrow` (a `small` network) computes, up to
    `noise`. Only `features` may differ, and big.features must be a multiple of small.features."""
    if (small.stacks, small.joints, small.depth) != (big.stacks, big.joints, big.depth):
        raise ValueError(f"only the feature count can be widened: {small} -> {big}")
    if big.features % small.features:
        raise ValueError(f"{big.features} features is not a multiple of {small.features}")
    g = torch.Generator().manual_seed(seed)
    wide = StackedHourglass(big).state_dict()
    out: dict[str, Tensor] = {}
    for key, target in wide.items():
        if key not in narrow:
            out[key] = _tiled_identity(target) if key.endswith("weight") else torch.zeros_like(target)
            continue
        src = narrow[key].to(target.dtype)
        if src.dim() == 0:  # num_batches_tracked
            out[key] = src.clone()
            continue
        reps = [t // s for t, s in zip(target.shape, src.shape, strict=True)]
        w = src.repeat(*reps)
        if src.dim() == 4:  # conv weight (out, in, kh, kw): tiled inputs are summed reps[1] times
            w = w / reps[1]
            if reps[0] > 1:
                w = w + noise * src.std() * torch.randn(w.shape, generator=g)
        out[key] = w
    return out


def _tiled_identity(weight: Tensor) -> Tensor:
    """A 1x1 convolution whose output channel j copies input channel j mod in_channels."""
    c_out, c_in = weight.shape[:2]
    eye = torch.zeros(c_out, c_in, 1, 1)
    eye[torch.arange(c_out), torch.arange(c_out) % c_in] = 1.0
    return eye
