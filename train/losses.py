"""What a pose model learns from each batch: the heatmap loss, and which side's labels a sample trains on."""

from __future__ import annotations

import torch


def masked_mse(outputs: list[torch.Tensor], target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """MSE summed over stacks (intermediate supervision); unlabelled joints weigh nothing."""
    w = weight[:, :, None, None]
    return sum((((o.float() - target) ** 2) * w).mean() for o in outputs)  # type: ignore[return-value]


def choose_mirrored(heatmaps: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, flip: torch.Tensor,
                    margin: float) -> torch.Tensor:
    """(B,) bool: the samples whose labels mirrored left/right (the joint set's flip permutation, image
    unchanged) the model's heatmaps fit better than their own labels, by `margin`.

    Crowd-sourced labels (LSPET) swap the person's left and right in about one image in ten (Johnson &
    Everingham 2011); training towards both sides at once blurs every limb."""
    with torch.no_grad():
        h = heatmaps.float()
        own = (((h - target) ** 2) * weight[:, :, None, None]).sum((1, 2, 3))
        other = (((h - target[:, flip]) ** 2) * weight[:, flip, None, None]).sum((1, 2, 3))
        return other < (1 - margin) * own
