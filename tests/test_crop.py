"""Crop policies: their geometry on synthetic poses, and on real clips with the shipped model, that
`track` follows a person who is not centred and `detect` finds one anywhere in the frame."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
import pytest

import streampose
from streampose.api import center_crop
from streampose.crop import MIN_SIZE, CenterCrop, Crop, CropPolicy, DetectCrop, FixedCrop, TrackCrop, parse_crop
from streampose.geometry import PIXELS_PER_SCALE

Image = npt.NDArray[np.uint8]

# The person in the first second of single_person_studio.mp4 stands still in a T-pose, left of the
# frame's centre; measured by eye: fingertips x 175 to 522, head top y 148 to feet y 492.
PERSON_BOX = (175.0, 148.0, 522.0, 492.0)
PERSON = np.array([345.0, 320.0])  # the body's centre
HEIGHT = 345.0
CANVAS_W = 3000


def blank(w: int = 640, h: int = 480) -> Image:
    return np.zeros((h, w, 3), np.uint8)


def joints(x0: float, y0: float, x1: float, y1: float, conf: float = 0.9, k: int = 14) -> npt.NDArray[np.float32]:
    """A synthetic pose: k joints spread over the box from (x0, y0) to (x1, y1), corners included."""
    kp = np.empty((k, 3), np.float32)
    kp[:, 0] = np.linspace(x0, x1, k)
    kp[:, 1] = np.linspace(y1, y0, k)
    kp[:, 2] = conf
    return kp


# --- geometry ------------------------------------------------------------------------------------
def test_center_crop_is_the_papers_centred_person() -> None:
    for w, h in [(640, 480), (480, 640), (1000, 1002)]:
        crop = CenterCrop().crop(blank(w, h))
        center, scale = center_crop(w, h)
        np.testing.assert_array_equal(crop.center, center)
        assert crop.scale == scale


def test_fixed_crop_box_round_trip() -> None:
    assert FixedCrop((10, 20, 100, 100), margin=1.0).crop(blank()).box == pytest.approx((10, 20, 100, 100))
    crop = FixedCrop((10, 20, 80, 160)).crop(blank())  # the square 1.25 x the longer side, same centre
    np.testing.assert_allclose(crop.center, (10 + 79 / 2, 20 + 159 / 2))
    assert crop.scale * PIXELS_PER_SCALE == pytest.approx(200.0)
    x, _, w, h = crop.box
    assert (w, h) == pytest.approx((200.0, 200.0)) and x + (w - 1) / 2 == pytest.approx(crop.center[0])


@pytest.mark.parametrize("box", [(0, 0, 0, 10), (0, 0, 10, -1)])
def test_fixed_crop_needs_a_real_box(box: tuple[float, float, float, float]) -> None:
    with pytest.raises(ValueError, match="w and h > 0"):
        FixedCrop(box)


def test_parse_crop_makes_a_fresh_policy_per_stream() -> None:
    assert isinstance(parse_crop("center")(), CenterCrop)
    track = parse_crop("track")()
    assert isinstance(track, TrackCrop) and isinstance(track.fallback, CenterCrop)
    assert isinstance(parse_crop("detect")(), DetectCrop)
    both = parse_crop(" Track+Detect ")()
    assert isinstance(both, TrackCrop) and isinstance(both.fallback, DetectCrop)
    fixed = parse_crop("200, 40, 120, 250")
    assert isinstance(fixed(), FixedCrop) and fixed() is not fixed()
    np.testing.assert_allclose(fixed().crop(blank()).center, (200 + 119 / 2, 40 + 249 / 2))
    assert parse_crop("track")() is not parse_crop("track")()


@pytest.mark.parametrize(("spec", "message"), [
    ("foo", r"unknown crop 'foo': use center, track, detect or x,y,w,h \(a person box in pixels\)"),
    ("", "unknown crop ''"),
    ("1,2,3", r"x,y,w,h \(4 numbers\), got 3"),
    ("1,2,3,4,5", r"x,y,w,h \(4 numbers\), got 5"),
    ("1,2,0,4", "w and h > 0, got 1,2,0,4"),
    ("1,2,3,-4", "w and h > 0"),
    ("1,2,three,4", "unknown crop '1,2,three,4'"),
])
def test_parse_crop_rejects_bad_specs(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_crop(spec)


def test_track_centres_on_a_confident_pose_and_smooths() -> None:
    track, frame = TrackCrop(), blank()
    first = track.crop(frame)
    np.testing.assert_allclose(first.center, center_crop(640, 480)[0])  # nothing heard yet: the centre
    track.update(joints(100, 50, 200, 350), first)
    crop = track.crop(frame)  # the first confident pose is taken as is
    np.testing.assert_allclose(crop.center, (150.0, 200.0))
    assert crop.scale * PIXELS_PER_SCALE == pytest.approx(1.25 * 301)
    track.update(joints(140, 50, 240, 350), crop)  # moved 40 px right: half way there (smoothing 0.5)
    moved = track.crop(frame)
    np.testing.assert_allclose(moved.center, (170.0, 200.0))
    assert moved.scale == pytest.approx(crop.scale)
    np.testing.assert_allclose(track.crop(frame).center, moved.center)  # until the next pose: the same crop


def test_track_falls_back_to_the_centre_when_the_pose_is_not_confident() -> None:
    track, frame = TrackCrop(), blank()
    track.update(joints(100, 50, 200, 350), track.crop(frame))
    kp = joints(100, 50, 200, 350, conf=0.9)
    kp[5:, 2] = 0.05  # 5 confident joints: fewer than 6
    track.update(kp, track.crop(frame))
    crop = track.crop(frame)
    center, scale = center_crop(640, 480)
    np.testing.assert_allclose(crop.center, center)
    assert crop.scale == scale
    track.update(joints(400, 50, 500, 350), crop)  # found again: tracking restarts without smoothing
    np.testing.assert_allclose(track.crop(frame).center, (450.0, 200.0))


def test_track_keeps_the_crop_in_the_frame_and_not_tiny() -> None:
    track, frame = TrackCrop(), blank()
    track.update(joints(-300, -200, -250, -150), track.crop(frame))  # a pose beyond the top-left corner
    crop = track.crop(frame)
    np.testing.assert_allclose(crop.center, (0.0, 0.0))
    track = TrackCrop()
    track.update(joints(300, 200, 305, 204), track.crop(frame))  # joints bunched in a few pixels
    assert track.crop(frame).scale == pytest.approx(MIN_SIZE * center_crop(640, 480)[1])


def test_track_frames_unsure_limbs_too() -> None:
    """Feet found with low confidence still count for the extent, or the crop would creep up the body."""
    track, frame = TrackCrop(), blank()
    kp = joints(100, 50, 200, 250)  # confident: head to hips
    kp[0] = (150.0, 450.0, 0.12)  # an ankle, unsure
    track.update(kp, track.crop(frame))
    crop = track.crop(frame)
    assert crop.box[1] + crop.box[3] > 450


# --- real frames with the shipped model ----------------------------------------------------------
@pytest.fixture(scope="module")
def estimator() -> Iterator[streampose.PoseEstimator]:
    with streampose.PoseEstimator("hg2-lite", backend="torch") as est:
        yield est


@pytest.fixture(scope="module")
def studio(studio_clip: Path) -> list[Image]:
    """The first 20 frames of the studio clip (1000 x 1002, 50 fps): the person stands left of centre."""
    with av.open(str(studio_clip)) as c:
        return [f.to_ndarray(format="bgr24") for _, f in zip(range(20), c.decode(video=0), strict=False)]


def paste(frame: Image, x: int) -> Image:
    """The frame on a wide grey canvas with its left edge at column x."""
    canvas = np.full((frame.shape[0], CANVAS_W, 3), 128, np.uint8)
    canvas[:, x:x + frame.shape[1]] = frame
    return canvas


def person_at(x: int) -> npt.NDArray[np.float64]:
    """Where the person is once the frame is pasted at column x."""
    where: npt.NDArray[np.float64] = PERSON + np.array([x, 0.0])
    return where


def follow(policy: CropPolicy, frames: Sequence[Image],
           est: streampose.PoseEstimator) -> tuple[list[Crop], npt.NDArray[np.float32]]:
    """Run a clip through a policy as the runtime does: crop, estimate, report the pose back."""
    crops, poses = [], []
    for frame in frames:
        crop = policy.crop(frame)
        pose = est.infer([est.prepare(frame, crop.center, crop.scale)])[0]
        policy.update(pose.keypoints, crop)
        crops.append(crop)
        poses.append(pose.keypoints)
    return crops, np.stack(poses)


def errors(crops: Sequence[Crop], where: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Each crop centre's distance from the person, per frame."""
    return np.array([np.linalg.norm(c.center - w) for c, w in zip(crops, where, strict=True)])


class CountingDetect(DetectCrop):
    """DetectCrop that counts its (costly) scans."""

    scans = 0

    def detect(self, frame: Image) -> Crop | None:
        self.scans += 1
        return super().detect(frame)


def test_track_follows_the_off_centre_person_in_a_real_clip(studio: list[Image],
                                                           estimator: streampose.PoseEstimator) -> None:
    """The studio clip as it is: the person is 250 px left of the centre and a third of the centre
    crop tall, so the centred network input is poor; `track` zooms in on them and stays."""
    where = np.broadcast_to(PERSON, (len(studio), 2))
    center_crops, center_kp = follow(CenterCrop(), studio, estimator)
    crops, kp = follow(TrackCrop(), studio, estimator)
    assert errors(center_crops, where).min() > 200
    err, conf = errors(crops, where), np.median(kp[..., 2], axis=1)
    assert (err[10:] < 0.1 * HEIGHT).all(), err.round()  # settled within 10 frames (0.2 s)
    assert (conf[4:] > 0.5).all() and np.median(center_kp[..., 2]) < 0.3, (conf, np.median(center_kp[..., 2]))  # 0.08 s
    side = np.array([c.scale for c in crops[10:]]) * PIXELS_PER_SCALE
    assert (abs(side / HEIGHT - 1.15) < 0.2).all(), side  # about the training scale (1.25 x the joints' extent)
    # the confident keypoints are on the person
    x0, y0, x1, y1 = PERSON_BOX
    sure = kp[3:][kp[3:, :, 2] > 0.3]
    assert ((sure[:, 0] > x0) & (sure[:, 0] < x1) & (sure[:, 1] > y0) & (sure[:, 1] < y1)).all()


def test_detect_finds_a_person_anywhere(studio: list[Image], estimator: streampose.PoseEstimator) -> None:
    """The person on the right of a 3000 px wide frame, far outside the centre crop."""
    canvas = paste(studio[0], 2000)
    detect = DetectCrop(estimator=estimator)
    crop = detect.crop(canvas)
    assert np.linalg.norm(crop.center - person_at(2000)) < 0.1 * HEIGHT
    assert 0.9 < crop.scale * PIXELS_PER_SCALE / HEIGHT < 1.6
    assert np.linalg.norm(CenterCrop().crop(canvas).center - person_at(2000)) > 800
    # no one there: the last detection stays
    grey = np.full_like(canvas, 128)
    assert detect.detect(grey) is None
    np.testing.assert_array_equal(detect.crop(grey).center, crop.center)
    # before any detection: the fallback
    np.testing.assert_allclose(DetectCrop(estimator=estimator).crop(grey).center, center_crop(CANVAS_W, 1002)[0])


def test_track_with_detect_finds_a_person_at_the_edge(studio: list[Image],
                                                      estimator: streampose.PoseEstimator) -> None:
    frames = [paste(f, 2000) for f in studio]
    where = np.broadcast_to(person_at(2000), (len(frames), 2))
    for lost in (CenterCrop(), TrackCrop()):  # the centre crop sees grey canvas only: nothing to track
        crops, kp = follow(lost, frames, estimator)
        assert np.median(kp[..., 2]) < 0.1 and errors(crops, where).min() > 800
    detect = CountingDetect(estimator=estimator)
    crops, kp = follow(TrackCrop(fallback=detect), frames, estimator)
    assert (errors(crops, where) < 0.1 * HEIGHT).all()
    assert (np.median(kp[..., 2], axis=1) > 0.5).all()
    assert detect.scans == 1  # found once, then tracked


def test_track_follows_a_moving_person(studio: list[Image], estimator: streampose.PoseEstimator) -> None:
    """The person moving right at 20 px a frame (1000 px/s at 50 fps, a run), starting off-centre."""
    offsets = [600 + 20 * i for i in range(len(studio))]
    frames = [paste(f, x) for f, x in zip(studio, offsets, strict=True)]
    where = np.array([person_at(x) for x in offsets])
    detect = CountingDetect(estimator=estimator)
    crops, kp = follow(TrackCrop(fallback=detect), frames, estimator)
    err = errors(crops, where)
    # smoothing lags: ~3 frames of motion behind (~60 px), a sixth of the crop
    assert (err < 0.25 * HEIGHT).all(), err.round()
    assert (np.median(kp[..., 2], axis=1) > 0.5).all()
    assert detect.scans == 1
    assert crops[-1].center[0] - crops[0].center[0] > 0.8 * (offsets[-1] - offsets[0])
