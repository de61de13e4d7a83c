"""streampose: real-time human pose streaming on stacked hourglass networks.

    import streampose
    est = streampose.PoseEstimator("hg2-lite")
    pose = est(frame_bgr)          # pose.keypoints: (K, 3) x, y in frame pixels, confidence

    with streampose.PoseStream("clip.mp4") as stream:   # videos, cameras, URLs, image folders
        for result in stream:
            print(result.frame.index, result.pose["l_wrist"])

    with streampose.Subscriber("tcp://127.0.0.1:5555") as sub:   # poses published by `streampose run`
        for msg in sub:
            print(msg.stream, msg.frame, msg.kp)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from streampose.api import PoseEstimator, load_model
    from streampose.checkpoint import Checkpoint, CheckpointError
    from streampose.joints import COCO17, LSP14, MPII16, JointSet
    from streampose.model import HourglassConfig, StackedHourglass
    from streampose.pose import Pose
    from streampose.publish import Publisher
    from streampose.runtime import PoseStream, Result, Sink
    from streampose.subscriber import Subscriber

_EXPORTS = {
    "PoseEstimator": "api", "load_model": "api", "Checkpoint": "checkpoint", "CheckpointError": "checkpoint",
    "COCO17": "joints", "LSP14": "joints", "MPII16": "joints", "JointSet": "joints",
    "HourglassConfig": "model", "StackedHourglass": "model", "Pose": "pose", "Publisher": "publish",
    "PoseStream": "runtime", "Result": "runtime", "Sink": "runtime", "Subscriber": "subscriber",
}


def __getattr__(name: str) -> Any:
    """Import on first use: `import streampose` stays light, and training code needs no PyAV or ZeroMQ."""
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"streampose.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'streampose' has no attribute {name!r}")


__version__ = "0.1.0"

__all__ = [
    "COCO17",
    "LSP14",
    "MPII16",
    "Checkpoint",
    "CheckpointError",
    "HourglassConfig",
    "JointSet",
    "Pose",
    "PoseEstimator",
    "PoseStream",
    "Publisher",
    "Result",
    "Sink",
    "StackedHourglass",
    "Subscriber",
    "__version__",
    "load_model",
]
