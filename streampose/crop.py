"""Crop policies: which square of each frame the network sees.

The network is trained on one person centred in its input at a known scale, so where the crop
goes decides how good the pose is. A policy gives the crop for each frame (`crop`) and hears the
pose found in it (`update`), so it can follow the person:

- `CenterCrop`: the paper's setting, the centred person (`api.center_crop`).
- `FixedCrop`: a person box given in pixels (a fixed camera, a known place).
- `DetectCrop`: find the person anywhere in the frame (a scan with the pose network itself).
- `TrackCrop`: the box of the last confident pose, smoothed; when the person is lost, a
  fallback policy finds them again.

The runtime makes one policy per stream (`parse_crop(spec)()`), calls `crop` for frame n and
`update` once frame n's pose is known; with batching, the crops of the next frames may be taken
before that pose arrives, and then use the latest one heard.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from streampose.api import PoseEstimator, center_crop
from streampose.geometry import PIXELS_PER_SCALE, box_to_center_scale, center_scale_to_box
from streampose.preprocess import Image

F64 = npt.NDArray[np.float64]
Keypoints = npt.NDArray[np.float32]

# A pose is confident with MIN_JOINTS joints at MIN_CONF or more. The confidences of hg2-lite are
# heatmap peaks: a well-framed person scores 0.5-0.9 on most joints, and one at a third of the
# training scale (a small person in the centre crop) still ~0.25 on half of them, enough to zoom in
# on; a plain background stays below 0.1, though clutter can reach 0.2-0.3 on a few joints.
MIN_CONF = 0.2
MIN_JOINTS = 6
MIN_SIZE = 0.2
"""Crops that follow joints are at least this fraction of the centre crop's side (people down to about
a sixth of the frame height): a few joints predicted close together must not zoom in on themselves."""


@dataclass(frozen=True, eq=False)  # arrays have no truth value: compare fields
class Crop:
    """A square crop: `center` (x, y) in frame pixels and `scale`, the side being 200 * scale pixels."""

    center: F64
    scale: float

    @property
    def box(self) -> tuple[float, float, float, float]:
        """The crop square (x, y, w, h) in frame pixels."""
        b = center_scale_to_box(self.center, self.scale)
        return float(b[0]), float(b[1]), float(b[2]), float(b[3])


class CropPolicy(ABC):
    """Where the network looks in each frame of one stream."""

    @abstractmethod
    def crop(self, frame: Image) -> Crop:
        """The crop for this frame (BGR, H x W x 3, or a video's 4:2:0 planes: see `preprocess.YUV420`;
        both have `.shape`, and `PoseEstimator` takes either)."""

    def update(self, keypoints: Keypoints, crop: Crop) -> None:
        """The pose found in `crop`: (K, 3) x, y in frame pixels and confidence in [0, 1].
        Policies that do not follow the person ignore it."""


class CenterCrop(CropPolicy):
    """The centred person, the paper's test setting (see `api.center_crop`)."""

    def crop(self, frame: Image) -> Crop:
        center, scale = center_crop(frame.shape[1], frame.shape[0])
        return Crop(center, scale)


class FixedCrop(CropPolicy):
    """The same person box (x, y, w, h) in every frame; the crop side is `margin` x its longer side."""

    def __init__(self, box: tuple[float, float, float, float], margin: float = 1.25) -> None:
        if len(box) != 4 or box[2] <= 0 or box[3] <= 0:
            raise ValueError(f"a person box is x,y,w,h with w and h > 0, got {','.join(f'{v:g}' for v in box)}")
        center, scale = box_to_center_scale(box, margin)
        self._crop = Crop(center, float(scale))

    def crop(self, frame: Image) -> Crop:
        return self._crop


def _person_crop(keypoints: Keypoints, min_conf: float, min_joints: int, margin: float) -> Crop | None:
    """The crop `margin` x the extent of a confident pose, or None when fewer than `min_joints` joints
    reach `min_conf`. The extent takes every joint at half that confidence or more: a limb the network
    is unsure of (the feet, often) still lies about right, and leaving it out would zoom in on the
    upper body until the legs are out of view."""
    conf = keypoints[:, 2]
    if int(np.sum(conf >= min_conf)) < min_joints:
        return None
    xy = keypoints[conf >= min_conf / 2, :2]
    (x0, y0), (x1, y1) = xy.min(axis=0), xy.max(axis=0)
    center, scale = box_to_center_scale([x0, y0, x1 - x0 + 1.0, y1 - y0 + 1.0], margin)
    return Crop(center, float(scale))


class DetectCrop(CropPolicy):
    """Finds the person anywhere in the frame, every `every` frames, and crops them at the training scale.

    OpenCV 5 no longer ships the HOG people detector (it moved to opencv_contrib), and no detector
    weights come with streampose, so the detector is the pose network itself: it scores every window
    of a grid at two sizes (the centre crop's side and half of it, overlapping by half) by the
    median confidence of the pose found there, then recentres the best window twice on that pose
    as `TrackCrop` would (a crop 1.25 x its extent, the training scale). It finds people from about a
    third of the frame height up to all of it. If the median confidence in the final crop is below
    `min_score` there is no one: the last detected crop is kept, or before any, `fallback`
    (default `CenterCrop`) is used.

    Cost: a network pass per window, 10 (+2) on a square frame, 17 on 16:9 and 31 on a 3:1
    panorama: with hg2-lite on 2 CPU cores 0.1-0.4 s, so detect only `every` few frames, or
    better, make this the fallback of a `TrackCrop`, which detects only when the person is lost.
    `estimator` is the network that scans (default: the default model with PyTorch on the CPU,
    loaded on first use).
    """

    def __init__(self, fallback: CropPolicy | None = None, every: int = 1, min_score: float = 0.3,
                 estimator: PoseEstimator | None = None) -> None:
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.fallback = fallback or CenterCrop()
        self.every, self.min_score = every, min_score
        self._estimator = estimator
        self._last: Crop | None = None
        self._frames = 0

    def crop(self, frame: Image) -> Crop:
        if self._frames % self.every == 0:
            self._last = self.detect(frame) or self._last
        self._frames += 1
        return self._last or self.fallback.crop(frame)

    def detect(self, frame: Image) -> Crop | None:
        """The crop of the most confident person in the frame, or None if there is none."""
        if self._estimator is None:
            self._estimator = PoseEstimator(backend="torch")
        est = self._estimator
        h, w = frame.shape[:2]
        _, s0 = center_crop(w, h)
        windows = [Crop(np.array([x, y]), s) for s in (s0, s0 / 2)
                   for y in _steps(h, s * PIXELS_PER_SCALE) for x in _steps(w, s * PIXELS_PER_SCALE)]
        poses = [p.keypoints for p in est.infer([est.prepare(frame, c.center, c.scale) for c in windows])]
        scores = [float(np.median(kp[:, 2])) for kp in poses]
        best = int(np.argmax(scores))
        crop, kp = windows[best], poses[best]
        for _ in range(2):
            found = _person_crop(kp, MIN_CONF, MIN_JOINTS, 1.25)
            if found is None:
                break
            crop = Crop(found.center, max(found.scale, s0 * MIN_SIZE))
            kp = est.infer([est.prepare(frame, crop.center, crop.scale)])[0].keypoints
        return crop if float(np.median(kp[:, 2])) >= self.min_score else None


def _steps(length: int, side: float) -> F64:
    """Window centres along one axis: windows of `side` covering [0, length) with half-window overlap."""
    if length <= side:
        return np.array([(length - 1) / 2.0])
    n = int(np.ceil((length - side) / (side / 2))) + 1
    return np.linspace(side / 2 - 0.5, length - side / 2 - 0.5, n)


class TrackCrop(CropPolicy):
    """Follows the person: each crop frames the last confident pose, smoothed over frames.

    After a confident pose (`min_joints` joints at `min_conf` or more), the next crop is `margin` x the
    longer side of the
    pose's extent (head top to ankles, so 1.25 is the training scale), averaged with the current crop
    (`smoothing` of the old plus the rest of the new, for centre and scale) so that jittery joints
    do not shake it; the price is lag: a person moving v pixels a frame is followed about
    v / (1 - smoothing) behind (twice v at 0.5), which at 25-60 fps is a few percent of the crop.
    The crop is never smaller than `min_size` x the centre crop's side and its centre stays in the
    frame. Without a confident pose the person is lost: `fallback` (default `CenterCrop`, or a
    `DetectCrop` to find a person who is not in the centre) gives the crops until one is found again.
    """

    def __init__(self, fallback: CropPolicy | None = None, min_conf: float = MIN_CONF, min_joints: int = MIN_JOINTS,
                 margin: float = 1.25, smoothing: float = 0.5, min_size: float = MIN_SIZE) -> None:
        if not 0 <= smoothing < 1:
            raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
        self.fallback = fallback or CenterCrop()
        self.min_conf, self.min_joints, self.margin = min_conf, min_joints, margin
        self.smoothing, self.min_size = smoothing, min_size
        self._tracked: Crop | None = None

    def crop(self, frame: Image) -> Crop:
        if self._tracked is None:
            return self.fallback.crop(frame)
        h, w = frame.shape[:2]
        center = np.clip(self._tracked.center, 0.0, [w - 1.0, h - 1.0])
        return Crop(center, max(self._tracked.scale, self.min_size * center_crop(w, h)[1]))

    def update(self, keypoints: Keypoints, crop: Crop) -> None:
        found = _person_crop(keypoints, self.min_conf, self.min_joints, self.margin)
        if found is None or self._tracked is None:
            self._tracked = found
            return
        k = self.smoothing
        self._tracked = Crop(k * self._tracked.center + (1 - k) * found.center,
                             k * self._tracked.scale + (1 - k) * found.scale)


_NUMBER = r"\s*[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?\s*"


def parse_crop(spec: str) -> Callable[[], CropPolicy]:
    """A factory of fresh policies (one per stream) for a crop spec: `center`, `track` (from the
    centre crop), `detect`, `track+detect` (track, finding the person by detection when lost) or
    `x,y,w,h` (a person box in pixels)."""
    name = spec.strip().lower()
    if name == "center":
        return CenterCrop
    if name == "track":
        return TrackCrop
    if name == "detect":
        return DetectCrop
    if name == "track+detect":
        return lambda: TrackCrop(fallback=DetectCrop())
    if re.fullmatch(rf"{_NUMBER}(?:,{_NUMBER})*", name):
        values = [float(v) for v in name.split(",")]
        if len(values) != 4:
            raise ValueError(f"a crop box is x,y,w,h (4 numbers), got {len(values)}: {spec!r}")
        box = (values[0], values[1], values[2], values[3])
        FixedCrop(box)  # validate now, not when the first stream starts
        return lambda: FixedCrop(box)
    raise ValueError(f"unknown crop {spec!r}: use center, track, detect or x,y,w,h (a person box in pixels)")
