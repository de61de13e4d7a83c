"""The result type: one person's pose in one frame."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from streampose.decode import pose_score
from streampose.joints import JointSet


@dataclass(frozen=True)
class Pose:
    """Keypoints in frame pixels (pixel centres at integers) with per-joint confidence."""

    keypoints: npt.NDArray[np.float32]
    """(K, 3): x, y, confidence in [0, 1]."""
    box: tuple[float, float, float, float]
    """The crop the network saw, (x, y, w, h) in frame pixels."""
    score: float
    """Overall confidence: mean joint confidence."""
    joints: JointSet
    id: int = 0
    """Which person of the stream this is: ids follow people across frames (see `streampose.crop`)."""

    def __getitem__(self, joint: str) -> npt.NDArray[np.float32]:
        """A joint's (x, y, confidence) by name, e.g. pose["l_wrist"]."""
        row: npt.NDArray[np.float32] = self.keypoints[self.joints.index(joint)]
        return row

    def as_dict(self) -> dict[str, list[float]]:
        """{joint name: [x, y, confidence]}, for printing and JSON."""
        return {n: [float(v) for v in self.keypoints[i]] for i, n in enumerate(self.joints.names)}


def most_confident(looks: Sequence[Pose]) -> Pose:
    """One person seen in several crops, as one pose: joint by joint, the look most confident of it (a wide crop
    keeps a far-flung limb in view, a tight one resolves the torso), with the first look's id and the box of the
    second where there is one (the crop framed by the first pose, which a tracker would take next)."""
    kps = np.stack([p.keypoints for p in looks])
    best = kps[np.argmax(kps[:, :, 2], axis=0), np.arange(kps.shape[1])]
    box = looks[1].box if len(looks) > 1 else looks[0].box
    return Pose(best, box, float(pose_score(best)), looks[0].joints, looks[0].id)
