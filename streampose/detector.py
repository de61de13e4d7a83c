"""`PersonDetector`: people's boxes in whole frames, from the detector network through any `Backend`.

The frame is letterboxed to the detector's input (one warp, as a pose crop is made), the backend runs the
batch, and `detect.decode` turns each frame's CenterNet maps into boxes in frame pixels.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from streampose import backends, models
from streampose.api import open_backend
from streampose.backends import Backend
from streampose.checkpoint import CheckpointError
from streampose.detect import boxes_to_frame, decode, letterbox
from streampose.joints import PERSON
from streampose.preprocess import Image, preprocess

F32 = npt.NDArray[np.float32]

THRESHOLD = 0.2
"""Default score a detection needs (sigmoid of the centre heatmap)."""


class PersonDetector:
    """Boxes (M, 5): x, y, w, h in frame pixels and the score, best first, for each frame. Safe to share
    between threads (calls take turns)."""

    def __init__(self, backend: Backend, threshold: float = THRESHOLD, top: int = 20) -> None:
        if backend.info.joints.name != PERSON.name:
            raise ValueError(f"a person detector predicts {PERSON.name}, but this model predicts "
                             f"{backend.info.joints.name} joints: it is a pose model; pass a detector "
                             "(person-det, or a checkpoint trained with --config person-det)")
        if not 0 <= threshold <= 1:
            raise ValueError(f"detection threshold must be in 0..1, got {threshold}")
        self.backend, self.threshold, self.top = backend, threshold, top
        self._lock = threading.Lock()

    def detect(self, frames: Sequence[Image]) -> list[F32]:
        """Every frame's boxes, in batches of at most the backend's maximum."""
        info = self.backend.info
        out: list[F32] = []
        for start in range(0, len(frames), info.max_batch):
            chunk = frames[start:start + info.max_batch]
            shapes = [f.shape[:2] for f in chunk]
            transforms = np.stack([letterbox(w, h, info.input_size) for h, w in shapes])
            x = preprocess(chunk, transforms, info.input_size, info.normalization)
            with self._lock:
                maps = self.backend.infer(x)
            for m, t, (h, w) in zip(maps, transforms, shapes, strict=True):
                boxes = decode(m, info.stride, top=self.top, threshold=self.threshold)
                out.append(boxes_to_frame(boxes, t, w, h))
        return out

    def __call__(self, frame: Image) -> F32:
        return self.detect([frame])[0]

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> PersonDetector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_detector(model: str | os.PathLike[str] = models.DETECTOR, backend: str = "auto", device: str = "cpu",
                  threshold: float = THRESHOLD, threads: int = 0) -> PersonDetector:
    """The detector by name, checkpoint or engine, on a backend (`auto`: the fastest here, as for pose models).
    A backend that runs engines only (the pose model's, when it is an ONNX or TensorRT engine) runs a detector
    checkpoint on `auto` instead; pass a detector engine to run it there too. A missing or damaged file is a
    `CheckpointError` that says how to get a good one."""
    runs = backend if backends.is_engine(model) or backend in backends.CHECKPOINTS else "auto"
    try:
        opened = open_backend(model, runs, device=device, threads=threads)
    except CheckpointError as e:
        raise CheckpointError(f"person detector: {e}") from None
    if (joints := opened.info.joints.name) != PERSON.name:
        opened.close()
        raise ValueError(f"{model} is a pose model ({joints} joints), not a person detector; pass "
                         f"--detector {models.DETECTOR} or a checkpoint trained with --config {models.DETECTOR}")
    return PersonDetector(opened, threshold)
