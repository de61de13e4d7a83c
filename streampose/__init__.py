"""streampose: real-time human pose streaming on stacked hourglass networks.

    import streampose
    est = streampose.PoseEstimator("hg2-lite")
    pose = est(frame_bgr)          # pose.keypoints: (K, 3) x, y in frame pixels, confidence
"""

from streampose.api import PoseEstimator, load_model
from streampose.checkpoint import Checkpoint, CheckpointError
from streampose.joints import COCO17, LSP14, MPII16, JointSet
from streampose.model import HourglassConfig, StackedHourglass
from streampose.pose import Pose

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
    "StackedHourglass",
    "__version__",
    "load_model",
]
