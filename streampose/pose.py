"""The result type: one person's pose in one frame."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

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
