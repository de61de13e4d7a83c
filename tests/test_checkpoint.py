from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from streampose import checkpoint as ck
from streampose.joints import LSP14, MPII16
from streampose.model import HourglassConfig, StackedHourglass
from streampose.preprocess import Normalization

CFG = HourglassConfig(stacks=2, features=32, joints=14, input_size=64)


def make(tmp_path: Path, half: bool = False) -> tuple[Path, ck.Checkpoint]:
    torch.manual_seed(0)
    net = StackedHourglass(CFG)
    c = ck.Checkpoint(
        config=CFG,
        joints=LSP14,
        normalization=Normalization(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), rgb=False),
        metadata={"data": "lspet 1-8500", "metrics": {"pck@0.2": 0.5}, "versions": {"torch": torch.__version__}},
        state_dict=net.state_dict(),
    )
    return ck.save(c, tmp_path / "m.pt", half=half), c


@pytest.mark.parametrize("half", [False, True])
def test_round_trip(tmp_path: Path, half: bool) -> None:
    path, orig = make(tmp_path, half)
    got = ck.load(path, joints="LSP14")
    assert got.config == orig.config and got.joints is LSP14
    assert got.normalization == orig.normalization and got.metadata == orig.metadata
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        a = StackedHourglass(CFG).eval()
        a.load_state_dict(orig.state_dict)
        want = a(x)
        have = got.build()(x)
    assert isinstance(want, torch.Tensor) and isinstance(have, torch.Tensor)
    if half:
        assert all(v.dtype == torch.float16 for v in got.state_dict.values() if v.is_floating_point())  # all fit
        torch.testing.assert_close(have, want, atol=0.05, rtol=0.05)
    else:
        torch.testing.assert_close(have, want)


def test_fp16_keeps_a_huge_running_variance_exactly(tmp_path: Path) -> None:
    """A batch-norm running variance beyond fp16's range (hg2-lite trained one of 2e5) stays fp32, exactly as
    trained: fp16 would store inf and clamping to 65504 changes the channel's output; the rest is fp16. An inf
    already in a state (an older fp16 file) becomes fp16's largest value."""
    _, c = make(tmp_path)
    key = next(k for k in c.state_dict if k.endswith("running_var"))
    var = c.state_dict[key].clone()
    var[0] = 2.0e5
    c = ck.Checkpoint(c.config, c.joints, c.normalization, c.metadata, {**c.state_dict, key: var})
    got = ck.load(ck.save(c, tmp_path / "h.pt", half=True)).state_dict
    assert got[key].dtype == torch.float32 and torch.equal(got[key], var)
    assert {k for k, v in got.items() if v.dtype == torch.float32} == {key}
    var[1] = float("inf")
    c = ck.Checkpoint(c.config, c.joints, c.normalization, c.metadata, {**c.state_dict, key: var})
    got = ck.load(ck.save(c, tmp_path / "h.pt", half=True)).state_dict
    assert torch.isfinite(got[key]).all() and got[key][1].item() == ck.FP16_MAX and got[key][0].item() == 2.0e5


def test_no_temp_file_left(tmp_path: Path) -> None:
    make(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ck.CheckpointError, match="no such checkpoint"):
        ck.load(tmp_path / "nope.pt")


def test_not_a_checkpoint(tmp_path: Path) -> None:
    p = tmp_path / "notes.pt"
    p.write_text("hello, I am a text file\n")
    with pytest.raises(ck.CheckpointError, match="not a streampose checkpoint"):
        ck.load(p)


def test_bare_state_dict_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "sd.pt"
    torch.save(StackedHourglass(CFG).state_dict(), p)
    with pytest.raises(ck.CheckpointError, match="not a streampose checkpoint"):
        ck.load(p)


def test_truncated(tmp_path: Path) -> None:
    path, _ = make(tmp_path)
    data = path.read_bytes()
    for cut in (len(data) // 2, len(data) - 10):
        path.write_bytes(data[:cut])
        with pytest.raises(ck.CheckpointError, match="truncated"):
            ck.load(path)


def test_pickled_objects_are_not_executed(tmp_path: Path) -> None:
    """weights_only=True: an archive holding arbitrary pickled objects is refused, not run."""

    p = tmp_path / "evil.pt"
    torch.save({"format": ck.FORMAT, "payload": pickle.PickleError("x")}, p)
    with pytest.raises(ck.CheckpointError, match="never loads"):
        ck.load(p)


def test_wrong_joint_set(tmp_path: Path) -> None:
    path, _ = make(tmp_path)
    with pytest.raises(ck.CheckpointError, match="predicts LSP14 joints but MPII16 was requested"):
        ck.load(path, joints=MPII16)


def test_future_format_version(tmp_path: Path) -> None:
    path, _ = make(tmp_path)
    payload = torch.load(path, weights_only=True)
    payload["format_version"] = 99
    torch.save(payload, path)
    with pytest.raises(ck.CheckpointError, match="version 99"):
        ck.load(path)


def test_weights_that_do_not_fit_the_config(tmp_path: Path) -> None:
    path, _ = make(tmp_path)
    payload = torch.load(path, weights_only=True)
    payload["config"]["features"] = 64
    torch.save(payload, path)
    with pytest.raises(ck.CheckpointError, match="do not fit"):
        ck.load(path).build()


def test_config_and_joint_set_must_agree() -> None:
    with pytest.raises(ck.CheckpointError, match="16 joints"):
        ck.Checkpoint(config=HourglassConfig(joints=16, features=32, input_size=64), joints=LSP14)
