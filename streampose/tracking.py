"""Tracking crops for videos: each person's crop frames their last confident pose, and the detector finds people
on the first frame, whenever one is lost, and every `redetect` frames (see `streampose.crop` for the policy
interface the runtime drives, and `TrackCrop` for the rules)."""

from __future__ import annotations

import dataclasses
import itertools
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from streampose.api import center_crop
from streampose.crop import (
    F64,
    MIN_CONF,
    MIN_JOINTS,
    MIN_SIZE,
    REDETECT,
    CenterCrop,
    Crop,
    CropPolicy,
    Detector,
    Keypoints,
    confident,
    detection_crop,
    most_plausible,
    person_crop,
)
from streampose.detect import iou, match, person_box
from streampose.preprocess import Image

REMEMBER = 50
"""Frames for which a person who was lost keeps their id: detected again where they were last seen (their box
overlapping by `detect.MATCH_IOU`), they are the same person (1-2 s of video)."""
SAME_PERSON = 0.6
"""Two tracks whose person boxes overlap this much (IoU) have converged on one person: the newer is dropped."""

@dataclass
class _Track:
    id: int
    crop: Crop
    box: F64
    """The person box (as the detector draws it) from the latest detection or confident pose: what the next
    detection is matched against."""
    lost: bool = False
    fresh: bool = True
    """Placed by a detection and not yet confirmed by a pose: its first pose is taken without smoothing."""


class TrackCrop(CropPolicy):
    """Follows up to `people` people: each crop frames the person's last confident pose, smoothed over frames.

    After a confident pose (`min_joints` joints at `min_conf` or more) the person's next crop is `margin` x
    the longer side of the pose's extent (head top to ankles, so 1.25 is the training scale), averaged with
    the current crop (`smoothing` of the old plus the rest of the new, for centre and scale) so that jittery
    joints do not shake it; the price is lag: a person moving v pixels a frame is followed about
    v / (1 - smoothing) behind (twice v at 0.5), which at 25-60 fps is a few percent of the crop. A crop is
    never smaller than `min_size` x the centre crop's side and its centre stays in the frame.

    With a `detector`, people are found by it: on the first frame, on the frame after one is lost (a pose
    that is not confident), and every `redetect` frames while all are tracked, to catch a better candidate.
    Detections are matched to the tracks by box overlap (`detect.match`): a matched person keeps their id and
    is re-cropped on the detection; unmatched detections take the free places, best first, then tracks the
    detector did not confirm keep what is left if their pose is confident (lost ones end). A person who ended
    is remembered for `remember` frames: a new detection where they were last seen takes their id back, so a
    pose lost for a moment (a player turning, someone passing in front) does not give them a new one. Where a
    detection places new people, `candidates` more detections are posed with them and `choose` keeps the most
    plausible (see `CANDIDATES`); the runtime calls `choose` for every frame (it gives the new people their ids).
    Without a detector (`track`), one person is followed, and while there is none `fallback` (default `CenterCrop`)
    gives the crop.
    """

    def __init__(self, detector: Detector | None = None, people: int = 1, redetect: int = REDETECT,
                 fallback: CropPolicy | None = None, min_conf: float = MIN_CONF, min_joints: int = MIN_JOINTS,
                 margin: float = 1.25, smoothing: float = 0.5, min_size: float = MIN_SIZE,
                 remember: int = REMEMBER, candidates: int = 0) -> None:
        if not 0 <= smoothing < 1:
            raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
        if people < 1 or redetect < 1 or candidates < 0:
            raise ValueError(f"people and redetect must be >= 1 and candidates >= 0, got {people}, {redetect} and "
                             f"{candidates}")
        if detector is None and people > 1:
            raise ValueError("following several people needs the person detector (crop auto, detect or "
                             "track+detect)")
        self.detector, self.people, self.redetect = detector, people, redetect
        self.fallback = fallback or CenterCrop()
        self.min_conf, self.min_joints, self.margin = min_conf, min_joints, margin
        self.smoothing, self.min_size, self.remember = smoothing, min_size, remember
        self.candidates = candidates
        self._tracks: list[_Track] = []
        self._pending: list[_Track] = []
        """People the latest detection placed, not yet chosen: the new people and the candidates, with provisional
        ids (negative); `choose` keeps `_places` of them."""
        self._places = 0
        self._provisional = itertools.count(-1, -1)
        self._named: deque[dict[int, int | None]] = deque(maxlen=8)
        """For recent detections, the id `choose` gave each provisional one (None: not kept): a batched pipeline
        takes the crops of the next frames before it hears the choice."""
        self._gone: list[tuple[_Track, int]] = []  # people who ended, and the frame they ended on
        self._ids = itertools.count()
        self._since = self._frame = 0
        self.detections = 0
        """Detector runs so far (for tests and benchmarks: tracking should make them rare)."""

    def crops(self, frame: Image) -> list[Crop]:
        if self.detector is not None:
            if not (self._tracks or self._pending) or any(t.lost for t in self._tracks) or self._since >= self.redetect:
                self._detect(frame)
            self._since += 1
            self._frame += 1
        elif not self._tracks:
            return self.fallback.crops(frame)
        h, w = frame.shape[:2]
        least = self.min_size * center_crop(w, h)[1]
        return [Crop(np.clip(t.crop.center, 0.0, [w - 1.0, h - 1.0]), max(t.crop.scale, least), t.id, t.crop.detection)
                for t in self._tracks + self._pending]

    def _detect(self, frame: Image) -> None:
        assert self.detector is not None
        self.detections += 1
        self._since = 0
        self._settle()
        boxes = self.detector(frame)[:, :5].astype(np.float64)
        pairs = dict(match(np.array([t.box for t in self._tracks]).reshape(-1, 4), boxes))
        kept = [_Track(t.id, detection_crop(boxes[pairs[i]], t.id), boxes[pairs[i], :4])
                for i, t in enumerate(self._tracks) if i in pairs]
        claimed = set(pairs.values())
        free = [b for j, b in enumerate(boxes) if j not in claimed]
        self._places = min(max(0, self.people - len(kept)), len(free))
        self._pending = []
        for b in free[: self._places + self.candidates if self._places else 0]:
            p = next(self._provisional)
            self._pending.append(_Track(p, detection_crop(b, p), b[:4]))
        # tracked but not detected: a confident track keeps a place that no detected person needs
        spare = [t for i, t in enumerate(self._tracks) if i not in pairs and not t.lost]
        ended, self._tracks = self._tracks, kept + spare[: self.people - len(kept) - self._places]
        alive = {t.id for t in self._tracks}
        self._gone = [(t, f) for t, f in self._gone if self._frame - f <= self.remember]
        self._gone += [(t, self._frame) for t in ended if t.id not in alive]
        if len(self._pending) == self._places:  # no candidate beyond the places: nothing to choose
            self._name(self._pending)

    def choose(self, poses: Sequence[tuple[Keypoints, Crop]]) -> list[tuple[int, Crop]]:
        """Everyone tracked; of the people a detection placed on this frame and the candidates, the most plausible,
        who get their ids now: the id of someone who ended where they are (within `remember` frames), else a new
        one. A later frame whose crops were taken before this choice has its poses renamed to match, or dropped."""
        pending = {t.id: t for t in self._pending}
        new = [j for j, (_, c) in enumerate(poses) if c.id in pending]
        if new:
            best = most_plausible([poses[j] for j in new], self._places)
            self._name([pending[poses[new[k]][1].id] for k in best])
        out = []
        for j, (_, c) in enumerate(poses):
            person = c.id if c.id >= 0 else next((n[c.id] for n in self._named if c.id in n), None)
            if person is not None:
                out.append((j, dataclasses.replace(c, id=person)))
        return out

    def _settle(self) -> None:
        """A detection whose choice was not heard before the next detection or a new scene (frames are prepared
        ahead of their results) is decided by the detector's ranking."""
        self._name(self._pending[: self._places])

    def _name(self, chosen: list[_Track]) -> None:
        """Track the chosen new people, with the id each had if they ended where they are now, else a new one."""
        if not self._pending:
            return
        named: dict[int, int | None] = {t.id: None for t in self._pending}
        back = dict(match(np.array([t.box for t, _ in self._gone]).reshape(-1, 4),
                          np.array([t.box for t in chosen]).reshape(-1, 4)))
        back_ids = {j: self._gone[i][0].id for i, j in back.items()}
        for j, t in enumerate(chosen):
            person = named[t.id] = back_ids[j] if j in back_ids else next(self._ids)
            self._tracks.append(_Track(person, dataclasses.replace(t.crop, id=person), t.box))
        self._gone = [g for i, g in enumerate(self._gone) if i not in back]
        self._named.append(named)
        self._pending = []

    def update(self, poses: Sequence[tuple[Keypoints, Crop]]) -> None:
        by_id = {t.id: t for t in self._tracks}
        for keypoints, crop in poses:
            t = by_id.get(crop.id)
            xy = confident(keypoints, self.min_conf, self.min_joints)
            if xy is None:
                if t is not None:
                    t.lost = True
                    if self.detector is None:
                        self._tracks.remove(t)
                continue
            found = person_crop(xy, self.margin)
            box = person_box(xy)  # as the detector would draw it: what the next detection is matched against
            assert box is not None
            if t is None:  # no detector: the fallback's crop found someone to follow
                if self.detector is None and not self._tracks:
                    self._tracks.append(_Track(crop.id, found, box, fresh=False))
                continue
            k = 0.0 if t.fresh or t.lost else self.smoothing
            t.crop = Crop(k * t.crop.center + (1 - k) * found.center, k * t.crop.scale + (1 - k) * found.scale, t.id)
            t.box, t.lost, t.fresh = box, False, False
        self._drop_duplicates()

    def _drop_duplicates(self) -> None:
        """Two tracks on one person (their crops drifted together): keep the older."""
        kept: list[_Track] = []
        for t in self._tracks:
            if all(iou(t.box, k.box)[0, 0] < SAME_PERSON for k in kept):
                kept.append(t)
        self._tracks = kept

    def reset(self) -> None:
        self._settle()  # the frame before the new scene still gets its people (`_named` keeps their ids)
        self._tracks, self._gone, self._ids, self._since, self._frame = [], [], itertools.count(), 0, 0
