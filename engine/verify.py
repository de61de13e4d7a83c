"""Does an engine compute what the PyTorch reference computes? Heatmap error and keypoint agreement.

Heatmap differences alone are hard to judge (fp16 and int8 always differ a little), so the
headline figure is keypoint agreement: the share of joints whose decoded peak lies within
0.5 heatmap pixel of the reference's, on real person crops.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from streampose.backends.base import Backend
from streampose.decode import taylor_peaks

TOLERANCE_PX = 0.5
"""Keypoints agree when their peaks are this close, in heatmap pixels."""


@dataclass(frozen=True)
class Agreement:
    crops: int
    joints: int
    max_abs: float
    mean_abs: float
    agreement: float
    """Share of joints within TOLERANCE_PX heatmap pixels of the reference."""
    worst_px: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        return (f"{self.crops} crops: heatmap |diff| max {self.max_abs:.2e} mean {self.mean_abs:.2e}; "
                f"keypoints within {TOLERANCE_PX} px: {100 * self.agreement:.2f}% "
                f"(worst {self.worst_px:.2f} px)")


def run(backend: Backend, crops: npt.NDArray[np.float32], batch: int = 8) -> npt.NDArray[np.float32]:
    batch = min(batch, backend.info.max_batch)
    return np.concatenate([backend.infer(crops[i:i + batch]) for i in range(0, len(crops), batch)])


def compare(engine: Backend, reference: Backend, crops: npt.NDArray[np.float32], batch: int = 8) -> Agreement:
    """Run both on the same crops (in batches, so the dynamic batch dimension is exercised)."""
    a, b = run(engine, crops, batch), run(reference, crops, batch)
    if a.shape != b.shape:
        raise ValueError(f"engine gives heatmaps {a.shape} but the reference {b.shape}")
    diff = np.abs(a - b)
    k = len(reference.info.joints)  # a detector's box channels have no peaks: its centre heatmaps do
    dist = np.linalg.norm(taylor_peaks(a[:, :k])[0] - taylor_peaks(b[:, :k])[0], axis=-1)
    return Agreement(crops=len(crops), joints=int(dist.size), max_abs=float(diff.max()),
                     mean_abs=float(diff.mean()), agreement=float(np.mean(dist <= TOLERANCE_PX)),
                     worst_px=float(dist.max()))
