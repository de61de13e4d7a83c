"""Crop policies: which squares of each frame the pose network sees, one per person.

The network is trained on one person centred in its input at a known scale, so where the crop goes
decides how good the pose is. A policy gives a frame's crops (`crops`: none when no one is found, up to
`people` otherwise, each with the id of the person it follows) and hears the poses found in them (`update`):

- `CenterCrop`: the paper's setting, the centred person (`api.center_crop`).
- `FixedCrop`: a person box given in pixels (a fixed camera, a known place).
- `DetectCrop`: the person detector on every frame (what images get: each is a new scene); one candidate more
  than `people` is posed and the most plausible kept (`choose`), then a second look at each person, cropped
  from the pose of the first and at the box's own crop (`second_look`), each joint from the surest look.
- `TrackCrop` (in `streampose.tracking`): each person's crop frames their last confident pose, smoothed; the
  detector finds people on the first frame, whenever one is lost, and every `redetect` frames to catch a better
  candidate (what videos get); where it places someone new, candidates are posed and chosen as `DetectCrop`
  chooses. Without a detector it follows one person from the centre crop.

`parse_crop(spec)` reads the user's choice (`auto`, `center`, `track`, `detect`, `track+detect`, `x,y,w,h`)
and `CropSpec.policy` makes one policy per stream. The runtime calls `crops` for frame n and `update` once
frame n's poses are known; with batching, the crops of the next frames may be taken before then, and use
the latest poses heard. Once a frame's poses are known it calls `choose` (which of them to keep), runs the
crops `second_look` gives, then `update`, frame by frame in order. For image sources each image is a new scene:
it takes the crops of the images waiting together (`scene_crops`, which resets before each, and where the policy
detects, runs the detector once over them all); their choices come later, and still number each image's people
from 0.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from streampose.api import center_crop
from streampose.detect import POSE_MARGIN, iou, match, pose_crop
from streampose.geometry import box_to_center_scale, center_scale_to_box
from streampose.preprocess import Image

F64 = npt.NDArray[np.float64]
Keypoints = npt.NDArray[np.float32]
Detector = Callable[[Image], npt.NDArray[np.float32]]
"""Finds people in a frame: boxes (M, 5+) x, y, w, h, score, best first (`PersonDetector` is one)."""

# A pose is confident with MIN_JOINTS joints at MIN_CONF or more. The confidences of hg2-lite are
# heatmap peaks: a well-framed person scores 0.5-0.9 on most joints, and one at a third of the
# training scale (a small person in the centre crop) still ~0.25 on half of them, enough to zoom in
# on; a plain background stays below 0.1, though clutter can reach 0.2-0.3 on a few joints.
MIN_CONF = 0.2
MIN_JOINTS = 6
MIN_SIZE = 0.2
"""Crops that follow joints are at least this fraction of the centre crop's side (people down to about
a sixth of the frame height): a few joints predicted close together must not zoom in on themselves."""
REDETECT = 30
"""Frames between detections while every person is tracked (0.6-1.2 s of video)."""
CANDIDATES = 1
"""Detections posed beyond the `people` asked for: the detector ranks people by how person-like they look, but
which one is *the* person (the athlete, not the referee beside them) shows better in their pose. Keeping the
`people` with the highest sqrt(detection score) x mean joint confidence of the first look, against the top
detections alone: +3.5 / +0.3 points PCK@0.2 on whole LSP 901-1000 / LSPET 8501-9000 images (hg2-lite,
person-det; 2 or 3 candidates alike; the score alone or times the pose's: +1.7 / -0.7 and +2.5 / +0.3). The
tracker's first frame (one look): +3.6 / -0.7 (`tools/full_image_ablation.py`; both within the paired 95 %
intervals of chance, -1.9..+9.6 and -2.0..+0.4)."""
WIDER = 1.2
"""A detection's first look is this much wider than its box asks (limbs the box cuts off stay in view); the second
look frames the pose found there. Against one look at the box's crop, +3.1 / +2.8 points PCK@0.2 on whole
LSPET 8501-9000 / LSP 901-1000 images with hg2-lite and person-det (1.1: +1.5 / +1.9; 1.3: +1.4 / -0.6)."""
SAME_LOOK = 0.8
"""A second look framed by the pose that overlaps the box's own crop this much (IoU) would see what that crop sees:
only the box's crop is taken. On whole LSPET 8501-9000 / LSP 901-1000 images (hg2-lite, person-det) that is a
third of the people (the median overlap is 0.81 / 0.83) and 16 / 17 % of the pose model's crops, for +0.0 / -0.0
points PCK@0.2 with the engines `auto` runs and -0.2 / -0.2 in torch fp32 (paired 95 %: -0.6..+0.3 / -1.1..+1.0);
at 0.75: -0.3..-0.6 / -0.2..-0.4; skipping the box's crop instead: -0.4..-0.8 / +0.1..-0.2."""


@dataclass(frozen=True, eq=False)  # arrays have no truth value: compare fields
class Crop:
    """A square crop: `center` (x, y) in frame pixels and `scale`, the side being 200 * scale pixels."""

    center: F64
    scale: float
    id: int = 0
    """The person this crop follows: ids are per stream, from 0, and not reused while the stream runs."""
    detection: float = 1.0
    """The detector's score for the person this crop was placed on (1 where no detection placed it)."""
    scene: int = 0
    """The scene (image) of the frame the crop was made for, where the policy counts them (`DetectCrop`): frames are
    prepared ahead of their choices, so a choice learns from its crops that a new image began."""

    @property
    def box(self) -> tuple[float, float, float, float]:
        """The crop square (x, y, w, h) in frame pixels."""
        b = center_scale_to_box(self.center, self.scale)
        return float(b[0]), float(b[1]), float(b[2]), float(b[3])


class CropPolicy(ABC):
    """Where the network looks in each frame of one stream."""

    @abstractmethod
    def crops(self, frame: Image) -> list[Crop]:
        """This frame's crops, most confident person first; empty when no one is found. `frame` is BGR
        (H x W x 3) or a video's 4:2:0 planes (see `preprocess.YUV420`); both have `.shape`."""

    def update(self, poses: Sequence[tuple[Keypoints, Crop]]) -> None:
        """The poses found in a frame's crops: (K, 3) x, y in frame pixels and confidence in [0, 1], with the
        crop each came from. Policies that do not follow people ignore them."""

    def reset(self) -> None:
        """The next frame is a new scene (the next image of a folder): forget everyone."""

    def scene_crops(self, frames: Sequence[Image]) -> list[list[Crop]]:
        """The crops of frames that are each a new scene (a folder's next images, in order), as `reset` then
        `crops` gives them for each; a policy that detects runs its detector once over them all."""
        out = []
        for frame in frames:
            self.reset()
            out.append(self.crops(frame))
        return out

    def choose(self, poses: Sequence[tuple[Keypoints, Crop]]) -> list[tuple[int, Crop]]:
        """Of this frame's first poses and their crops (as `crops` gave them), those to keep, best first: the
        index of each and its crop, with the id of the person it is. Policies that give no more crops than
        people keep them all."""
        return list(enumerate(c for _, c in poses))

    def second_look(self, poses: Sequence[tuple[Keypoints, Crop]]) -> list[list[Crop]]:
        """For each pose of this frame and its crop, the crops of a second look at that person (same id; the first
        is where the person is followed from), none where the first pose stands. Each joint is then taken from
        the look most confident of it (`pose.most_confident`). Policies that look once give none."""
        return [[] for _ in poses]


class CenterCrop(CropPolicy):
    """The centred person, the paper's test setting (see `api.center_crop`)."""

    def crops(self, frame: Image) -> list[Crop]:
        center, scale = center_crop(frame.shape[1], frame.shape[0])
        return [Crop(center, scale)]


class FixedCrop(CropPolicy):
    """The same person box (x, y, w, h) in every frame; the crop side is `margin` x its longer side."""

    def __init__(self, box: tuple[float, float, float, float], margin: float = 1.25) -> None:
        if len(box) != 4 or box[2] <= 0 or box[3] <= 0:
            raise ValueError(f"a person box is x,y,w,h with w and h > 0, got {','.join(f'{v:g}' for v in box)}")
        center, scale = box_to_center_scale(box, margin)
        self._crop = Crop(center, float(scale))

    def crops(self, frame: Image) -> list[Crop]:
        return [self._crop]


def confident(keypoints: Keypoints, min_conf: float, min_joints: int) -> F64 | None:
    """The positions of a confident pose's joints (those at half `min_conf` or more: a limb the network is
    unsure of, often the feet, still lies about right), or None when fewer than `min_joints` reach `min_conf`."""
    conf = keypoints[:, 2]
    if int(np.sum(conf >= min_conf)) < min_joints:
        return None
    return np.asarray(keypoints[conf >= min_conf / 2, :2], dtype=np.float64)


def person_crop(xy: F64, margin: float) -> Crop:
    """The crop `margin` x the extent of a confident pose's joints (from `confident`)."""
    (x0, y0), (x1, y1) = xy.min(axis=0), xy.max(axis=0)
    center, scale = box_to_center_scale([x0, y0, x1 - x0 + 1.0, y1 - y0 + 1.0], margin)
    return Crop(center, float(scale))


def most_plausible(poses: Sequence[tuple[Keypoints, Crop]], n: int) -> list[int]:
    """The indices of the `n` poses whose sqrt(detection score) x mean joint confidence is highest, best first
    (see `CANDIDATES`)."""
    plausible = [-np.sqrt(c.detection) * float(np.mean(k[:, 2])) for k, c in poses]
    return [int(j) for j in np.argsort(plausible, kind="stable")[:n]]


def detection_crop(box: npt.ArrayLike, person: int, wider: float = 1.0, scene: int = 0) -> Crop:
    b = np.asarray(box, dtype=np.float64)
    center, scale = pose_crop(b[:4])
    return Crop(center, wider * float(scale), person, float(b[4]) if len(b) > 4 else 1.0, scene)


def _detect_all(detector: Detector, frames: Sequence[Image]) -> list[npt.NDArray[np.float32]]:
    """Every frame's boxes: in batches where the detector takes them (`PersonDetector.detect`: a batch of 4-8
    costs 0.6x the network time per image of one at a time), else frame by frame."""
    batched = getattr(detector, "detect", None)
    return list(batched(frames)) if callable(batched) else [detector(f) for f in frames]


class DetectCrop(CropPolicy):
    """The people the detector finds in every frame, each cropped as the pose model was trained
    (`detect.pose_crop`): the `people` + `candidates` most confident detections are posed and `choose` keeps
    the `people` whose sqrt(detection score) x pose score is highest (see `CANDIDATES`). Ids follow people from
    one frame to the next by box overlap (`detect.match`); `reset` (a new image) numbers them from 0 again.
    With `refine`, each first crop is `WIDER`, and the second look frames the confident pose found in it as the
    tracker frames the next frame (a detector's box is rougher than a pose's extent: the crop the pose network
    was trained on is the pose's) and also takes the box's own crop (only that one where the two nearly coincide:
    `SAME_LOOK`); each joint comes from the look most sure of it (`pose.most_confident`): against the framed look
    alone, +1.2 / +1.8 points PCK@0.2 on whole LSPET 8501-9000 / LSP 901-1000 images with hg2-lite, +0.1 / +0.3
    with hg2 (a third look at 1.1 or 1.3 x the box instead: -0.5..+0.8; averaging the looks' joints by confidence:
    -1.4..-1.2)."""

    def __init__(self, detector: Detector, people: int = 1, refine: bool = True, candidates: int = CANDIDATES
                 ) -> None:
        if people < 1 or candidates < 0:
            raise ValueError(f"people must be >= 1 and candidates >= 0, got {people} and {candidates}")
        self.detector, self.people, self.refine, self.candidates = detector, people, refine, candidates
        self._ids = itertools.count()
        self._last: list[tuple[int, F64]] = []
        self._scene = self._named = 0  # the scene crops are made for, and the one ids were last given in

    def crops(self, frame: Image) -> list[Crop]:
        """The candidates' crops, numbered in detection order (`choose` gives the kept ones their ids)."""
        return self._crops(self.detector(frame))

    def scene_crops(self, frames: Sequence[Image]) -> list[list[Crop]]:
        out = []
        for boxes in _detect_all(self.detector, frames):
            self.reset()
            out.append(self._crops(boxes))
        return out

    def _crops(self, boxes: npt.NDArray[np.float32]) -> list[Crop]:
        wider = WIDER if self.refine else 1.0
        return [detection_crop(b, j, wider, self._scene)
                for j, b in enumerate(boxes[: self.people + self.candidates].astype(np.float64))]

    def choose(self, poses: Sequence[tuple[Keypoints, Crop]]) -> list[tuple[int, Crop]]:
        if poses and poses[0][1].scene != self._named:  # the first choice in a new image: ids from 0, no one before
            self._named, self._ids, self._last = poses[0][1].scene, itertools.count(), []
        kept = most_plausible(poses, self.people)
        boxes = np.array([poses[j][1].box for j in kept]).reshape(-1, 4)  # crop squares overlap as the boxes do
        previous = np.array([b for _, b in self._last]).reshape(-1, 4)
        ids = {j: self._last[i][0] for i, j in match(previous, boxes)}
        self._last = [(ids[j] if j in ids else next(self._ids), b) for j, b in enumerate(boxes)]
        return [(j, dataclasses.replace(poses[j][1], id=person)) for j, (person, _) in zip(kept, self._last,
                                                                                             strict=True)]

    def second_look(self, poses: Sequence[tuple[Keypoints, Crop]]) -> list[list[Crop]]:
        if not self.refine:
            return super().second_look(poses)
        out = []
        for keypoints, crop in poses:
            tight = dataclasses.replace(crop, scale=crop.scale / WIDER)  # the box's own crop
            xy = confident(keypoints, MIN_CONF, MIN_JOINTS)
            framed = [] if xy is None else [dataclasses.replace(person_crop(xy, POSE_MARGIN), id=crop.id,
                                                                detection=crop.detection)]
            if framed and iou(framed[0].box, tight.box)[0, 0] >= SAME_LOOK:
                framed = []
            out.append([*framed, tight])
        return out

    def reset(self) -> None:
        """The next crops are of a new scene: their choice numbers people from 0 (the choices of frames prepared
        before may still be to come)."""
        self._scene += 1


_NUMBER = r"\s*[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?\s*"
KINDS = ("auto", "center", "track", "detect", "track+detect")


@dataclass(frozen=True)
class CropSpec:
    """A user's crop choice, checked; `policy` makes a fresh policy for one stream."""

    kind: str
    box: tuple[float, float, float, float] | None = None

    @property
    def needs_detector(self) -> bool:
        return self.kind in ("auto", "detect", "track+detect")

    def check(self, people: int) -> None:
        """Refuse several people with a crop that follows one."""
        if people > 1 and not self.needs_detector:
            what = "a fixed box" if self.box is not None else self.kind
            raise ValueError(f"--people {people} needs the person detector: use --crop auto, detect or track+detect, "
                             f"not {what}")

    def policy(self, scenes: bool, detector: Detector | None = None, people: int = 1,
               redetect: int = REDETECT, refine: bool = True, candidates: int = CANDIDATES) -> CropPolicy:
        """The policy for a stream whose frames are each a new scene (`scenes`: images) or a video. `auto`
        detects on every image and tracks with the detector on videos. `refine` and `candidates`: of
        `DetectCrop`."""
        from streampose.tracking import TrackCrop  # it builds on this module's policies

        self.check(people)
        if self.needs_detector and detector is None:
            raise ValueError(f"crop {self.kind} needs the person detector")
        if self.box is not None:
            return FixedCrop(self.box)
        if self.kind == "center":
            return CenterCrop()
        if self.kind == "track":
            return TrackCrop()
        assert detector is not None
        if self.kind == "detect" or (self.kind == "auto" and scenes):
            return DetectCrop(detector, people, refine, candidates)
        return TrackCrop(detector, people, redetect, candidates=candidates)


def parse_crop(spec: str) -> CropSpec:
    """`auto`, `center`, `track` (from the centre crop, no detector), `detect`, `track+detect` or `x,y,w,h`
    (a person box in pixels)."""
    name = spec.strip().lower()
    if name in KINDS:
        return CropSpec(name)
    if re.fullmatch(rf"{_NUMBER}(?:,{_NUMBER})*", name):
        values = [float(v) for v in name.split(",")]
        if len(values) != 4:
            raise ValueError(f"a crop box is x,y,w,h (4 numbers), got {len(values)}: {spec!r}")
        box = (values[0], values[1], values[2], values[3])
        FixedCrop(box)  # validate now, not when the first stream starts
        return CropSpec("box", box)
    raise ValueError(f"unknown crop {spec!r}: use auto, center, track, detect, track+detect or x,y,w,h "
                     "(a person box in pixels)")
