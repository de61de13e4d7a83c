"""The one interface every inference backend implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from streampose.joints import JointSet
from streampose.preprocess import Normalization


class BackendUnavailable(RuntimeError):
    """The backend's library or hardware is missing; the message names what to install."""


@dataclass(frozen=True)
class BackendInfo:
    """What the runtime needs to know to feed a backend and read its output."""

    name: str
    input_size: int
    stride: int
    joints: JointSet
    normalization: Normalization
    max_batch: int
    precision: str
    device: str
    jobs: int = 1
    """Batches the backend runs at the same time (`submit` returns before they finish); 1 for most."""


Job = Callable[[], npt.NDArray[np.float32]]
"""A submitted batch: calling it waits for the batch and returns its heatmaps (the same array on every call)."""


class Backend(ABC):
    """Runs preprocessed crops (N, 3, S, S) float32 to heatmaps (N, K, S/stride, S/stride) float32."""

    info: BackendInfo

    @abstractmethod
    def infer(self, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]: ...

    def submit(self, batch: npt.NDArray[np.float32]) -> Job:
        """Start a batch and return at once where the backend can run `info.jobs` batches side by side (a
        streaming runtime keeps that many in flight, so that a core lost to decoding stalls one batch, not
        all cores); here, one at a time, it runs to the end first. `batch` must stay unchanged until the
        job is called."""
        heat = self.infer(batch)
        return lambda: heat

    def close(self) -> None:
        """Release device memory and handles. Safe to call twice."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def check_batch(self, batch: npt.NDArray[np.float32]) -> None:
        s = self.info.input_size
        if batch.ndim != 4 or batch.shape[1:] != (3, s, s):
            raise ValueError(f"{self.info.name} backend expects (N, 3, {s}, {s}) input, got {batch.shape}")
        if not 1 <= batch.shape[0] <= self.info.max_batch:
            raise ValueError(f"batch of {batch.shape[0]} outside 1..{self.info.max_batch} for {self.info.name}")
