"""Does an engine compute what the PyTorch reference computes? Heatmap error and keypoint agreement.

Heatmap differences alone are hard to judge (fp16 and int8 always differ a little), so the
headline figure is keypoint agreement: the share of joints whose decoded peak lies within
0.5 heatmap pixel of the reference's, on real person crops. A person detector's is the share of
images whose top box overlaps the reference's at IoU >= 0.5: where two people score alike, a peak half
a pixel away can be the other person, or the same person's box barely moved.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from streampose.backends.base import Backend
from streampose.decode import taylor_peaks
from streampose.detect import decode, iou

TOLERANCE_PX = 0.5
"""Keypoints agree when their peaks are this close, in heatmap pixels."""
BOX_IOU = 0.5
"""A detector's top boxes agree when they overlap this much."""


@dataclass(frozen=True)
class Agreement:
    crops: int
    joints: int
    max_abs: float
    mean_abs: float
    agreement: float
    """Share of joints within TOLERANCE_PX heatmap pixels of the reference (a detector: of top boxes at BOX_IOU)."""
    worst_px: float
    """Farthest peak, or for a detector the farthest top box centre, in heatmap pixels."""
    boxes: bool = False
    """A detector's agreement: `joints` counts images, each its top box."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        what = f"top boxes at IoU >= {BOX_IOU}" if self.boxes else f"keypoints within {TOLERANCE_PX} px"
        return (f"{self.crops} crops: heatmap |diff| max {self.max_abs:.2e} mean {self.mean_abs:.2e}; "
                f"{what}: {100 * self.agreement:.2f}% (worst {self.worst_px:.2f} px)")


def run(backend: Backend, crops: npt.NDArray[np.float32], batch: int = 8) -> npt.NDArray[np.float32]:
    batch = min(batch, backend.info.max_batch)
    return np.concatenate([backend.infer(crops[i:i + batch]) for i in range(0, len(crops), batch)])


def compare(engine: Backend, reference: Backend, crops: npt.NDArray[np.float32], batch: int = 8) -> Agreement:
    """Run both on the same crops (in batches, so the dynamic batch dimension is exercised)."""
    a, b = run(engine, crops, batch), run(reference, crops, batch)
    if a.shape != b.shape:
        raise ValueError(f"engine gives heatmaps {a.shape} but the reference {b.shape}")
    diff = np.abs(a - b)
    k = len(reference.info.joints)
    if a.shape[1] > k:  # a detector: centre heatmap and box channels
        return box_agreement(a, b, reference.info.stride, float(diff.max()), float(diff.mean()))
    dist = np.linalg.norm(taylor_peaks(a[:, :k])[0] - taylor_peaks(b[:, :k])[0], axis=-1)
    return Agreement(crops=len(crops), joints=int(dist.size), max_abs=float(diff.max()),
                     mean_abs=float(diff.mean()), agreement=float(np.mean(dist <= TOLERANCE_PX)),
                     worst_px=float(dist.max()))


def box_agreement(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32], stride: int, max_abs: float,
                   mean_abs: float) -> Agreement:
    """A detector engine's maps `a` against the reference's `b` (N, 5, H, W), each image by its top box."""
    agree, far = [], 0.0
    for maps, ref in zip(a, b, strict=True):
        p, q = decode(maps, stride, top=1), decode(ref, stride, top=1)
        if len(p) == 0 or len(q) == 0:
            agree.append(len(p) == len(q))
            continue
        agree.append(bool(iou(p, q)[0, 0] >= BOX_IOU))
        far = max(far, float(np.linalg.norm((p[0, :2] + p[0, 2:4] / 2) - (q[0, :2] + q[0, 2:4] / 2))) / stride)
    return Agreement(crops=len(a), joints=len(a), max_abs=max_abs, mean_abs=mean_abs,
                     agreement=float(np.mean(agree)), worst_px=far, boxes=True)
