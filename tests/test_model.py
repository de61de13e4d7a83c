from __future__ import annotations

import pytest
import torch

from streampose.model import HourglassConfig, StackedHourglass, conv_macs, count_parameters

# The original Torch7 layout's counts (16 joints, 256 features, 256 px), from the issue and DESIGN.md.
REFERENCE_COUNTS = {1: 3_426_448, 2: 6_570_400, 4: 12_858_304, 8: 25_434_112}


def analytic_count(stacks: int, features: int, joints: int, depth: int = 4, stem: int = 128,
                   outputs: int | None = None) -> int:
    """The same count derived by hand from the layout, without building any module; `outputs` is the head's
    channels (the joints, or a detector's centre heatmap plus 4 box channels)."""

    def conv(i: int, o: int, k: int = 1) -> int:
        return i * o * k * k + o

    def bn(c: int) -> int:
        return 2 * c

    def residual(i: int, o: int) -> int:
        m = o // 2
        body = bn(i) + conv(i, m) + bn(m) + conv(m, m, 3) + bn(m) + conv(m, o)
        return body + (0 if i == o else conv(i, o))

    f, k, w = features, outputs or joints, stem
    stem_params = conv(3, w // 2, 7) + bn(w // 2) + residual(w // 2, w) + residual(w, w) + residual(w, f)
    hourglass = (3 * depth + 1) * residual(f, f)  # 3 residuals per level, 1 more at the bottom
    stack = hourglass + residual(f, f) + conv(f, f) + bn(f) + conv(f, k)
    merge = conv(f, f) + conv(k, f)
    return stem_params + stacks * stack + (stacks - 1) * merge


@pytest.mark.parametrize("stacks", sorted(REFERENCE_COUNTS))
def test_parameter_count_matches_reference(stacks: int) -> None:
    net = StackedHourglass(HourglassConfig(stacks=stacks, features=256, joints=16, input_size=256))
    assert count_parameters(net) == REFERENCE_COUNTS[stacks]
    assert analytic_count(stacks, 256, 16) == REFERENCE_COUNTS[stacks]


@pytest.mark.parametrize("stacks,features,joints", [(2, 128, 14), (3, 64, 17), (1, 32, 16)])
def test_parameter_count_matches_analytic_for_variants(stacks: int, features: int, joints: int) -> None:
    net = StackedHourglass(HourglassConfig(stacks=stacks, features=features, joints=joints, input_size=128))
    assert count_parameters(net) == analytic_count(stacks, features, joints)


@pytest.mark.parametrize(
    "cfg",
    [
        HourglassConfig(stacks=1, features=64, joints=16, input_size=256),
        HourglassConfig(stacks=2, features=128, joints=14, input_size=128),
        HourglassConfig(stacks=3, features=32, joints=17, input_size=192),
        HourglassConfig(stacks=2, features=64, joints=14, input_size=64, depth=2),
    ],
    ids=str,
)
def test_output_shapes_train_and_eval(cfg: HourglassConfig) -> None:
    net = StackedHourglass(cfg)
    x = torch.randn(2, 3, cfg.input_size, cfg.input_size)
    hm = cfg.heatmap_size
    net.train()
    outs = net(x)
    assert isinstance(outs, list) and len(outs) == cfg.stacks
    assert all(o.shape == (2, cfg.joints, hm, hm) for o in outs)
    net.eval()
    with torch.no_grad():
        last = net(x)
        all_eval = net.forward_all(x)
    assert isinstance(last, torch.Tensor) and last.shape == (2, cfg.joints, hm, hm)
    torch.testing.assert_close(last, all_eval[-1])


def test_the_person_detector_config() -> None:
    """person-det: the same blocks with a narrow stem and CenterNet's maps (centre, log w, log h, offsets)."""
    from streampose import models

    cfg = models.PRESETS[models.DETECTOR].config
    assert (cfg.head, cfg.joints, cfg.outputs, cfg.stem, cfg.input_size) == ("centernet", 1, 5, 32, 256)
    net = StackedHourglass(cfg)
    assert count_parameters(net) == analytic_count(cfg.stacks, cfg.features, 1, stem=32, outputs=5) == 421_674
    assert round(conv_macs(cfg) / 1e9, 3) == 0.551  # 0.72 x hg2-lite's work, on 4 x its input pixels
    net.eval()
    with torch.no_grad():
        out = net(torch.zeros(1, 3, 256, 256))
    assert isinstance(out, torch.Tensor) and out.shape == (1, 5, 64, 64)
    # the centre heatmap starts at CenterNet's prior: sigmoid 0.1 everywhere
    assert torch.sigmoid(net.stacks[-1].heatmaps.bias[0]).item() == pytest.approx(0.1, abs=1e-3)
    assert HourglassConfig.from_dict(cfg.to_dict()) == cfg
    old = {k: v for k, v in HourglassConfig().to_dict().items() if k not in ("stem", "head")}
    assert HourglassConfig.from_dict(old) == HourglassConfig()  # checkpoints from before these fields


def test_stacks_do_not_share_weights() -> None:
    net = StackedHourglass(HourglassConfig(stacks=2, features=32, joints=14, input_size=64))
    a, b = net.stacks[0].heatmaps.weight, net.stacks[1].heatmaps.weight
    assert a.data_ptr() != b.data_ptr()


def test_conv_macs_match_baseline() -> None:
    # perf-baseline.md: 1 and 2 stacks at 256 features / 256 px cost 5.15 and 8.33 conv GMAC
    assert round(conv_macs(HourglassConfig(stacks=1, joints=16)) / 1e9, 2) == 5.15
    assert round(conv_macs(HourglassConfig(stacks=2, joints=16)) / 1e9, 2) == 8.33


@pytest.mark.parametrize(
    "kwargs",
    [{"stacks": 0}, {"features": 3}, {"input_size": 100}, {"joints": 0}, {"depth": 0}, {"stem": 6},
     {"head": "yolo"}],
)
def test_bad_config_is_rejected(kwargs: dict[str, int | str]) -> None:
    with pytest.raises(ValueError):
        HourglassConfig(**kwargs)  # type: ignore[arg-type]


def test_config_dict_round_trip() -> None:
    cfg = HourglassConfig(stacks=4, features=128, joints=17, input_size=192, depth=3)
    assert HourglassConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown"):
        HourglassConfig.from_dict({**cfg.to_dict(), "bogus": 1})
