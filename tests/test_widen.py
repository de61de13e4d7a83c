"""Widening a trained narrow hourglass into a wide one keeps what it computes (train/widen.py)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from streampose.model import HourglassConfig, StackedHourglass
from train.widen import widen

SMALL = HourglassConfig(stacks=2, features=8, joints=3, input_size=32, depth=2)


def trained_like(cfg: HourglassConfig) -> StackedHourglass:
    """Random weights and batch-norm statistics, so that no layer is an accidental identity."""
    torch.manual_seed(0)
    net = StackedHourglass(cfg)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return net.eval()


@pytest.mark.parametrize("factor", [2, 4])
def test_widened_network_computes_the_same_heatmaps(factor: int) -> None:
    narrow = trained_like(SMALL)
    big = replace(SMALL, features=SMALL.features * factor)
    wide = StackedHourglass(big).eval()
    wide.load_state_dict(widen(narrow.state_dict(), SMALL, big, noise=0.0))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(wide.forward_all(x), narrow.forward_all(x), rtol=1e-4, atol=1e-5)


def test_noise_lets_the_copies_of_a_channel_differ() -> None:
    narrow = trained_like(SMALL)
    big = replace(SMALL, features=16)
    state = widen(narrow.state_dict(), SMALL, big, noise=0.03)
    w = state["stacks.0.features.1.body.2.weight"]  # a 1x1 conv inside a residual: 16 -> 8 channels
    assert w.shape[:2] == (8, 16)
    assert not torch.equal(w[:4], w[4:])
    spread = narrow.state_dict()["stacks.0.features.1.body.2.weight"].std()
    assert (w[:4] - w[4:]).abs().max() < 0.03 * 6 * spread  # a few standard deviations of the noise


def test_only_the_feature_count_can_grow_by_a_whole_factor() -> None:
    state = trained_like(SMALL).state_dict()
    with pytest.raises(ValueError, match="only the feature count"):
        widen(state, SMALL, replace(SMALL, features=16, stacks=3))
    with pytest.raises(ValueError, match="not a multiple"):
        widen(state, SMALL, replace(SMALL, features=12))
