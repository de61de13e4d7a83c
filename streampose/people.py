"""From a frame to its people, the runtime's per-frame work around the network: the crops its stream's
policy asks for (`prepare`), then, once the batch has run, which of the poses found are people (`chosen`), a
further look at each where the policy wants one, the policy told what was found, and smoothing (`results`).

`find` takes the same steps on one frame (`PoseEstimator.find`, full-image evaluation); the runtime runs them
on batches of frames, every look of a batch in one run of the network.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from streampose.crop import Crop, CropPolicy
from streampose.intake import Stream
from streampose.pose import Pose
from streampose.preprocess import Image
from streampose.results import Result
from streampose.smoothing import OneEuro
from streampose.sources import Frame

if TYPE_CHECKING:
    from streampose.api import PoseEstimator, Prepared


@dataclass(frozen=True)
class Item:
    """A frame with the crops of the people in it (none when no one was found), ready for the network."""

    stream: Stream
    frame: Frame
    crops: list[Crop]
    prepared: list[Prepared]


def prepare(estimator: PoseEstimator, s: Stream, frame: Frame) -> Item:
    """The frame's crops (from its stream's policy) warped to the network input."""
    return prepare_all(estimator, s, [frame])[0]


def prepare_all(estimator: PoseEstimator, s: Stream, frames: Sequence[Frame]) -> list[Item]:
    """`prepare` for frames of one stream, in order: where each is a new scene (images), the policy finds the
    people of all of them at once (`CropPolicy.scene_crops`: one detector batch)."""
    with s.lock:
        if s.source.info.scenes:
            crops = s.policy.scene_crops([f.pixels for f in frames])
        else:
            crops = [s.policy.crops(f.pixels) for f in frames]
    return [Item(s, f, cs, [estimator.prepare(f.pixels, c.center, c.scale) for c in cs])
            for f, cs in zip(frames, crops, strict=True)]


def chosen(policy: CropPolicy, found: Sequence[Pose], crops: Sequence[Crop]) -> tuple[list[Pose], list[Crop]]:
    """The poses the policy keeps of those found in `crops` (one each), each with the id its crop was given,
    and their crops."""
    kept = policy.choose([(p.keypoints, c) for p, c in zip(found, crops, strict=True)])
    return [dataclasses.replace(found[j], id=c.id) for j, c in kept], [c for _, c in kept]


def find(estimator: PoseEstimator, policy: CropPolicy, frame: Image) -> list[Pose]:
    """The people `policy` finds in one frame, as the runtime finds them in a frame of its stream (first looks,
    the choice, the second looks), best first."""
    first = policy.crops(frame)
    found = estimator.infer([estimator.prepare(frame, c.center, c.scale) for c in first]) if first else []
    poses, kept = chosen(policy, found, first)
    again = policy.second_look([(p.keypoints, c) for p, c in zip(poses, kept, strict=True)])
    return estimator.look_again([(frame, p, a) for p, a in zip(poses, again, strict=True)])


def results(estimator: PoseEstimator, items: Sequence[Item], poses: Iterator[Pose]) -> list[Result]:
    """Each frame's people from the poses its crops gave (in batch order): chosen, looked at again where the
    policy asks (all second looks of the batch in one run of the network), the policy updated, smoothed."""
    firsts = []
    for it in items:
        found = [pose for _, pose in zip(it.crops, poses, strict=False)]
        with it.stream.lock:
            firsts.append(chosen(it.stream.policy, found, it.crops))
    out = []
    for it, (found, crops) in zip(items, _second_looks(estimator, items, firsts), strict=True):
        s = it.stream
        with s.lock:
            s.policy.update([(p.keypoints, c) for p, c in zip(found, crops, strict=True)])
        if s.smooth and not s.source.info.scenes:  # images are unrelated: nothing to smooth across
            s.smoothers = {p.id: s.smoothers.get(p.id) or OneEuro() for p in found}  # who left is forgotten
            found = [dataclasses.replace(p, keypoints=s.smoothers[p.id](p.keypoints, it.frame.pts)) for p in found]
        out.append(Result(s.id, it.frame, tuple(found), estimator.joints))
    return out


def _second_looks(estimator: PoseEstimator, items: Sequence[Item], firsts: Sequence[tuple[list[Pose], list[Crop]]]
                  ) -> list[tuple[list[Pose], list[Crop]]]:
    """Each frame's poses and crops after the second looks its policy asks for; a person looked at again
    carries their first further crop (where the tracker follows them)."""
    people, out = [], []
    for it, (found, kept) in zip(items, firsts, strict=True):
        with it.stream.lock:
            again = it.stream.policy.second_look([(p.keypoints, c) for p, c in zip(found, kept, strict=True)])
        people += [(it.frame.pixels, p, a) for p, a in zip(found, again, strict=True)]
        out.append([a[0] if a else c for a, c in zip(again, kept, strict=True)])
    poses = iter(estimator.look_again(people))
    return [([next(poses) for _ in crops], crops) for crops in out]
