"""tools/peers: the pure parts only (landmark mapping, crops, table, venv reuse). No venv is created
and nothing is downloaded; the peer itself runs only in `python tools/peers/compare.py`."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace

import numpy as np
import pytest

from streampose.geometry import crop_transform, transform_points
from streampose.joints import LIMBS12, LSP14
from train.datasets import Annotation, Dataset
from train.evaluate import lsp_pck

PEERS_DIR = Path(__file__).resolve().parents[1] / "tools" / "peers"


@pytest.fixture(scope="module")
def tools() -> Iterator[SimpleNamespace]:
    sys.path.insert(0, str(PEERS_DIR))
    try:
        import compare
        import envs
        import mediapipe_runner
    finally:
        sys.path.remove(str(PEERS_DIR))
    yield SimpleNamespace(compare=compare, envs=envs, runner=mediapipe_runner)


def blazepose(offset: float = 0.0) -> np.ndarray:
    """33 landmarks whose coordinates name their index: landmark i at (i + offset, 100 + i), visibility 0.5."""
    i = np.arange(33, dtype=np.float64)
    return np.stack([i + offset, 100 + i, np.full(33, 0.5)], axis=1)


def test_landmarks_map_to_lsp_limbs_person_centric(tools: SimpleNamespace) -> None:
    c: ModuleType = tools.compare
    out = c.mp33_to_lsp14(blazepose(), LSP14.names)
    assert out.shape == (14, 3)
    expect = {"r_ankle": 28, "r_knee": 26, "r_hip": 24, "l_hip": 23, "l_knee": 25, "l_ankle": 27,
              "r_wrist": 16, "r_elbow": 14, "r_shoulder": 12, "l_shoulder": 11, "l_elbow": 13, "l_wrist": 15}
    for name, index in expect.items():
        assert out[LSP14.index(name)].tolist() == [index, 100 + index, 0.5]
    assert set(c.MP33_TO_LSP14) == set(LIMBS12)
    assert np.isnan(out[LSP14.index("neck")]).all() and np.isnan(out[LSP14.index("head_top")]).all()
    assert np.isnan(c.mp33_to_lsp14(None, LSP14.names)).all()  # no person found
    with pytest.raises(ValueError, match="33"):
        c.mp33_to_lsp14(np.zeros((17, 3)), LSP14.names)


def test_no_person_counts_every_joint_missed(tools: SimpleNamespace) -> None:
    """NaN predictions (no person) are scored as misses, not left out of the count."""
    gt = np.zeros((14, 3), np.float32)
    gt[:, 0], gt[:, 1], gt[:, 2] = np.arange(14) * 10.0, np.arange(14) * 20.0, 1
    ds = Dataset("fake", LSP14, [Annotation(Path(f"im{i}.jpg"), gt, (50.0, 100.0), 1.5) for i in range(2)])
    exact = np.full((14, 3), np.nan, np.float32)
    for name in tools.compare.MP33_TO_LSP14:
        exact[LSP14.index(name)] = gt[LSP14.index(name)]
    rep = lsp_pck(np.stack([exact, tools.compare.mp33_to_lsp14(None, LSP14.names)]), ds)
    assert rep.images == 2 and rep.limbs == pytest.approx(0.5)
    assert all(rep.counts[n] == 2 for n in LIMBS12)


def test_peer_gets_our_crop_and_landmarks_map_back(tools: SimpleNamespace) -> None:
    ds = Dataset("fake", LSP14, [Annotation(Path("a.jpg"), np.zeros((14, 3), np.float32), (120.5, 80.0), 0.9)])
    item = tools.compare.peer_items(ds, 256)[0]
    assert item["size"] == 256 and item["image"] == "a.jpg"
    np.testing.assert_allclose(item["affine"], crop_transform((120.5, 80.0), 0.9, 256))
    wider = tools.compare.peer_items(ds, 256, context=1.6)[0]
    np.testing.assert_allclose(wider["affine"], crop_transform((120.5, 80.0), 0.9 * 1.6, 256))
    # image points -> crop (as the runner's warp sees them) -> back through the runner's inverse
    pts = np.array([[100.0, 60.0, 0.9], [140.25, 99.5, 0.1]])
    crop_pts = transform_points(np.asarray(item["affine"]), pts)
    np.testing.assert_allclose(tools.runner.crop_to_image(crop_pts, item["affine"]), pts, atol=1e-9)


def test_runner_landmarks_to_pixel_centres(tools: SimpleNamespace) -> None:
    lm = [SimpleNamespace(x=0.5, y=0.25, visibility=0.8)] * 33
    out = tools.runner.landmarks_px(SimpleNamespace(pose_landmarks=SimpleNamespace(landmark=lm)), 256, 128)
    assert out.shape == (33, 3) and out[0].tolist() == [127.5, 31.5, 0.8]
    assert tools.runner.landmarks_px(SimpleNamespace(pose_landmarks=None), 256, 128) is None


def test_table(tools: SimpleNamespace) -> None:
    c = tools.compare
    rows = [c.Row("streampose hg2-lite (openvino bf16)", {"studio": 200.0, "two": 90.0}, 0.522),
            c.Row("MediaPipe BlazePose full", {"studio": 50.0}, None)]
    text = c.format_table(rows, ["studio", "two"])
    lines = text.splitlines()
    assert "studio fps" in lines[0] and "two fps" in lines[0] and "PCK@0.2 limbs" in lines[0]
    assert lines[2].split()[-4:] == ["200.0", "90.0", "52.2", "%"]
    assert "50.0 (4.00x)" in lines[3] and lines[3].rstrip().endswith("-")
    assert len({len(line) for line in lines[:4]}) == 1  # aligned columns
    assert c.ratio(200.0, 50.0) == 4.0 and c.ratio(200.0, 0.0) is None and c.ratio(None, 50.0) is None
    assert c.format_table([], ["studio"]) == ""


def test_venv_reused_only_when_current(tools: SimpleNamespace, tmp_path: Path) -> None:
    e = tools.envs
    peer = e.PEERS["mediapipe"]
    assert "mediapipe==0.10.21" in peer.requirements and (PEERS_DIR / peer.runner).is_file()
    venv = tmp_path / "mediapipe-venv"
    assert not e.is_current(venv, peer)
    e.venv_python(venv).parent.mkdir(parents=True)
    e.venv_python(venv).write_text("")
    assert not e.is_current(venv, peer)  # no marker: an install that did not finish
    (venv / e.MARKER).write_text(json.dumps(e.marker_for(peer)))
    assert e.is_current(venv, peer)
    assert e.ensure_venv(peer, tmp_path, log=False) == e.venv_python(venv)  # reused: no pip, no network
    (venv / e.MARKER).write_text(json.dumps({**e.marker_for(peer), "requirements": ["mediapipe==0.10.14"]}))
    assert not e.is_current(venv, peer)
