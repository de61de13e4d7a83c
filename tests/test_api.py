from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import streampose
from streampose import checkpoint as ck
from streampose import models
from streampose.backends import BackendUnavailable, create


@pytest.fixture(scope="module")
def estimator() -> streampose.PoseEstimator:
    torch.manual_seed(0)
    return streampose.PoseEstimator(streampose.load_model("hg2-lite", pretrained=False))


def test_estimate_on_real_image(estimator: streampose.PoseEstimator, messi: Path) -> None:
    frame = cv2.imread(str(messi))
    pose = estimator(frame)
    assert pose.keypoints.shape == (14, 3) and pose.keypoints.dtype == np.float32
    assert np.isfinite(pose.keypoints).all()
    assert ((pose.keypoints[:, 2] >= 0) & (pose.keypoints[:, 2] <= 1)).all()
    h, w = frame.shape[:2]
    # no box: the centered person, a square of side min(1.25 h, max(w, h)) centred in the frame
    side = min(1.25 * h, max(w, h))
    assert pose.box[2] == pytest.approx(side) and pose.box[3] == pytest.approx(side)
    assert pose.box[0] + side / 2 == pytest.approx(w / 2) and pose.box[1] + side / 2 == pytest.approx(h / 2)
    assert pose["head_top"].shape == (3,)


def test_find_poses_whoever_the_detector_finds(messi: Path) -> None:
    """`find`: the person detector, then the pose in its crop, as `streampose run photo.jpg` does."""
    frame = cv2.imread(str(messi))
    with streampose.PoseEstimator(backend="torch") as est:
        (pose,) = est.find(frame)
        assert pose.id == 0 and pose.score > 0.2
        torso = [pose[n] for n in ("neck", "r_shoulder", "l_shoulder", "r_hip", "l_hip")]
        assert all(150 < x < 350 and 40 < y < 280 for x, y, _ in torso)  # on the player
        assert est.find(np.full_like(frame, 128)) == []  # no one in a grey frame
        assert len(est.find(frame, people=3)) <= 3


def test_find_takes_any_function_of_a_frame_as_its_detector(messi: Path) -> None:
    """Bring your own detector: `find` crops where the given function's boxes are, and never opens person-det."""
    frame = cv2.imread(str(messi))
    seen: list[tuple[int, ...]] = []

    def one_box(image: np.ndarray) -> np.ndarray:
        seen.append(image.shape)
        return np.array([[200.0, 40.0, 120.0, 250.0, 0.9]], np.float32)

    with streampose.PoseEstimator(backend="torch", detector=one_box) as est:
        (pose,) = est.find(frame, refine=False)
        assert seen == [frame.shape]
        x, y, w, h = pose.box
        assert (x + w / 2, y + h / 2) == pytest.approx((259.5, 164.5), abs=1)  # the crop is centred on that box
        assert est._own_detector is None
    with streampose.PoseEstimator(backend="torch", detector=lambda _: np.zeros((0, 5), np.float32)) as est:
        assert est.find(frame) == []


def test_keypoints_stay_inside_the_crop(estimator: streampose.PoseEstimator, messi: Path) -> None:
    frame = cv2.imread(str(messi))
    pose = estimator(frame, box=(200.0, 40.0, 120.0, 250.0))
    x, y, w, h = pose.box
    assert w == pytest.approx(1.25 * 250)
    kp = pose.keypoints
    assert ((kp[:, 0] >= x - 1) & (kp[:, 0] <= x + w) & (kp[:, 1] >= y - 1) & (kp[:, 1] <= y + h)).all()


def test_keypoints_follow_the_frame(estimator: streampose.PoseEstimator, messi: Path) -> None:
    """Shifting the picture and the box by the same amount shifts every keypoint by exactly that:
    the crop, the network input and the decoding are unchanged, only the geometry moves."""
    frame = cv2.imread(str(messi))
    dx, dy = 37, 21
    shifted = cv2.copyMakeBorder(frame, dy, 0, dx, 0, cv2.BORDER_CONSTANT, value=0)
    box = (150.0, 30.0, 200.0, 280.0)
    a = estimator(frame, box=box)
    b = estimator(shifted, box=(box[0] + dx, box[1] + dy, box[2], box[3]))
    np.testing.assert_allclose(b.keypoints[:, :2] - a.keypoints[:, :2], np.broadcast_to([dx, dy], (14, 2)), atol=1e-3)
    np.testing.assert_allclose(b.keypoints[:, 2], a.keypoints[:, 2], atol=1e-5)


def test_batch_equals_single(estimator: streampose.PoseEstimator, data: Path) -> None:
    frames = [cv2.imread(str(data / "images" / n), cv2.IMREAD_UNCHANGED) for n in ("messi5.jpg", "basketball1.png")]
    batch = estimator.estimate(frames)
    singles = [estimator(f) for f in frames]
    # batched convolutions round differently; an untrained net's flat peaks amplify that a little
    for p, q in zip(batch, singles, strict=True):
        np.testing.assert_allclose(p.keypoints, q.keypoints, atol=0.05)
    assert estimator.estimate([]) == []
    with pytest.raises(ValueError, match="2 frames but 1 boxes"):
        estimator.estimate(frames, [(0.0, 0.0, 10.0, 10.0)])


def test_load_model_by_path_and_name(tmp_path: Path) -> None:
    fresh = streampose.load_model("hg2-lite", pretrained=False)
    assert fresh.config == models.PRESETS["hg2-lite"].config and fresh.joints is streampose.LSP14
    path = ck.save(fresh, tmp_path / "x.pt")
    assert streampose.load_model(path).config == fresh.config
    with pytest.raises(ck.CheckpointError, match="neither a checkpoint file nor a model name"):
        streampose.load_model("hg9-nonexistent")
    with pytest.raises(ck.CheckpointError, match="MPII16 was requested"):
        streampose.load_model("hg2-lite", joints="MPII16", pretrained=False)


def test_named_model_without_weights_says_how_to_get_them(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(models, "HERE", tmp_path)  # an install with no shipped weights
    with pytest.raises(ck.CheckpointError, match="no trained weights for 'hg2'"):
        streampose.load_model("hg2")


def test_backend_errors() -> None:
    fresh = streampose.load_model("hg2-lite", pretrained=False)
    with pytest.raises(ValueError, match="unknown backend"):
        create("nope", fresh)
    if not torch.cuda.is_available():
        with pytest.raises(BackendUnavailable, match="CUDA"):
            create("torch", fresh, device="cuda")


def test_backend_checks_input_shape() -> None:
    backend = create("torch", streampose.load_model("hg2-lite", pretrained=False))
    with pytest.raises(ValueError, match=r"\(N, 3, 128, 128\)"):
        backend.infer(np.zeros((1, 3, 64, 64), np.float32))
    out = backend.infer(np.zeros((2, 3, 128, 128), np.float32))
    assert out.shape == (2, 14, 32, 32) and out.dtype == np.float32


@pytest.mark.cuda
@pytest.mark.usefixtures("exact_cuda")
def test_torch_backend_on_cuda_matches_cpu() -> None:
    model = streampose.load_model("hg2-lite", pretrained=False)
    x = np.random.default_rng(0).normal(size=(4, 3, 128, 128)).astype(np.float32)
    cpu = create("torch", model).infer(x)
    gpu = create("torch", model, device="cuda").infer(x)
    np.testing.assert_allclose(gpu, cpu, atol=1e-3, rtol=1e-3)
