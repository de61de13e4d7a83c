"""The library entry points: `load_model` and `PoseEstimator`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from streampose import backends, models
from streampose.checkpoint import Checkpoint, CheckpointError, check_joints, load
from streampose.decode import decode, pose_score
from streampose.geometry import box_to_center_scale, center_scale_to_box, crop_transform
from streampose.joints import JointSet
from streampose.pose import Pose
from streampose.preprocess import preprocess

Box = tuple[float, float, float, float]


def load_model(
    path_or_name: str | os.PathLike[str] = models.DEFAULT,
    joints: JointSet | str | None = None,
    pretrained: bool = True,
) -> Checkpoint:
    """A model by shipped name (`hg2-lite`, `hg2`) or checkpoint path.

    `pretrained=False` builds a named model with fresh (untrained) weights, for training or for
    checking the plumbing; its keypoints are meaningless.
    """
    name = os.fspath(path_or_name)
    preset = models.PRESETS.get(name)
    if preset is None:
        if not Path(name).exists():
            raise CheckpointError(
                f"{name!r} is neither a checkpoint file nor a model name; names: {', '.join(models.PRESETS)}"
            )
        return load(name, joints=joints)
    if not pretrained:
        ckpt = Checkpoint(config=preset.config, joints=preset.joints, metadata={"name": name, "trained": False})
        if joints is not None:
            check_joints(ckpt, joints, name)
        return ckpt
    weights = preset.weights(name)
    if not weights.is_file():
        raise CheckpointError(
            f"no trained weights for {name!r} are installed ({weights} is missing); "
            "train one with `streampose train` and pass its path, or use pretrained=False (--untrained)"
        )
    return load(weights, joints=joints)


class PoseEstimator:
    """Frames in, poses out: crop, run the network, decode back to frame pixels.

    >>> est = PoseEstimator("hg2-lite")
    >>> pose = est(frame_bgr)                 # the whole frame is the crop
    >>> pose = est(frame_bgr, box=(x, y, w, h))  # a person box; the crop is 1.25x its longer side
    """

    def __init__(
        self,
        model: Checkpoint | str | os.PathLike[str] = models.DEFAULT,
        backend: str = "auto",
        device: str = "cpu",
        box_margin: float = 1.25,
    ) -> None:
        """`model`: a loaded checkpoint, a model name or checkpoint path, or an engine built by
        `streampose build`; `backend`: auto (the fastest that works here), torch, onnxruntime, openvino or
        tensorrt."""
        if not isinstance(model, Checkpoint) and backends.is_engine(model):
            self.backend = backends.create(backend, model, device=device)
        else:
            ckpt = model if isinstance(model, Checkpoint) else load_model(model)
            self.backend = backends.create(backend, ckpt, device=device)
        self.box_margin = box_margin

    @property
    def joints(self) -> JointSet:
        return self.backend.info.joints

    def __call__(self, frame: npt.NDArray[np.uint8], box: Box | None = None) -> Pose:
        return self.estimate([frame], None if box is None else [box])[0]

    def estimate(self, frames: Sequence[npt.NDArray[np.uint8]], boxes: Sequence[Box] | None = None) -> list[Pose]:
        """One pose per frame, run as batches of at most the backend's max batch."""
        if boxes is not None and len(boxes) != len(frames):
            raise ValueError(f"{len(frames)} frames but {len(boxes)} boxes")
        if not frames:
            return []
        if boxes is None:
            centers, scales = box_to_center_scale([(0, 0, f.shape[1], f.shape[0]) for f in frames], margin=1.0)
        else:
            centers, scales = box_to_center_scale(boxes, margin=self.box_margin)
        info = self.backend.info
        transforms = crop_transform(centers, scales, info.input_size)
        poses: list[Pose] = []
        for start in range(0, len(frames), info.max_batch):
            sl = slice(start, start + info.max_batch)
            batch = preprocess(list(frames[sl]), transforms[sl], info.input_size, info.normalization)
            kps = decode(self.backend.infer(batch), transforms[sl], stride=info.stride)
            crops = center_scale_to_box(centers[sl], scales[sl])
            for kp, crop, score in zip(kps, crops, pose_score(kps), strict=True):
                poses.append(Pose(kp, (crop[0], crop[1], crop[2], crop[3]), float(score), info.joints))
        return poses

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> PoseEstimator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
