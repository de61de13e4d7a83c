"""Person detection as plain numpy functions: the whole frame letterboxed to the detector's input, CenterNet
maps decoded to boxes, boxes to pose crops, box overlap.

Boxes are (x, y, w, h) in frame pixels with pixel centres at integers (a box covers x .. x + w - 1, its centre
is x + (w - 1) / 2), as `geometry.box_to_center_scale` reads them. A person's box is the box of its labelled
joints grown by `PERSON_MARGIN` of its longer side on every side: head_top is the top of the skull and the
ankles are above the soles, so the margin takes in the hair, the feet and the hands beyond the wrists. The
detector is trained on such boxes; `pose_crop` undoes the margin to crop the way the pose model was trained.
"""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

from streampose import geometry as g

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

PERSON_MARGIN = 0.08
"""Each side of a person box lies this share of the joint box's longer side beyond the outermost joint."""
POSE_MARGIN = 1.25
"""The pose crop's side over the joint box's longer side: the LSP protocol the pose models train and score on."""


def person_box(points: npt.ArrayLike, size: tuple[int, int] | None = None) -> F64 | None:
    """The person box (x, y, w, h) of (K, 2) joint positions (already filtered to the labelled ones), clipped to
    an image of `size` (width, height) where given; None without points or with nothing inside the image."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if not len(p):
        return None
    lo, hi = p.min(axis=0), p.max(axis=0)
    pad = PERSON_MARGIN * float(np.max(hi - lo + 1))
    lo, hi = lo - pad, hi + pad
    if size is not None:
        lo, hi = np.maximum(lo, 0.0), np.minimum(hi, [size[0] - 1.0, size[1] - 1.0])
    if np.any(hi < lo):
        return None
    return np.array([lo[0], lo[1], hi[0] - lo[0] + 1, hi[1] - lo[1] + 1])


def pose_crop(box: npt.ArrayLike) -> tuple[F64, F64]:
    """(..., 4) person boxes -> centres (..., 2) and scales (...) of the pose crops: the joint box inside the
    margin, times `POSE_MARGIN`, square."""
    b = np.asarray(box, dtype=np.float64)
    return g.box_to_center_scale(b, margin=POSE_MARGIN / (1 + 2 * PERSON_MARGIN))


def letterbox(width: int, height: int, size: int) -> F64:
    """Frame -> detector input (2, 3): the whole frame, longer side to `size`, centred, black bars."""
    return g.crop_transform(((width - 1) / 2.0, (height - 1) / 2.0), max(width, height) / g.PIXELS_PER_SCALE, size)


def sigmoid(x: npt.NDArray[np.floating]) -> F32:
    out: F32 = (1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float32)))).astype(np.float32)
    return out


def decode(maps: npt.ArrayLike, stride: int, top: int = 20, threshold: float = 0.1) -> F32:
    """One image's CenterNet maps (5, H, W) -> up to `top` boxes (M, 5): x, y, w, h in input pixels and the
    score, best first. A peak is a centre-heatmap pixel no lower than its 8 neighbours (CenterNet's 3x3
    max-pool suppression, which stands in for box NMS); `threshold` is on the sigmoid score."""
    m = np.asarray(maps, dtype=np.float32)
    heat = sigmoid(m[0])
    peaks = (heat >= cv2.dilate(heat, np.ones((3, 3), np.uint8))) & (heat >= threshold)
    ys, xs = np.nonzero(peaks)
    order = np.argsort(-heat[ys, xs], kind="stable")[:top]
    ys, xs = ys[order], xs[order]
    w = np.exp(np.clip(m[1, ys, xs], -10, 10)) * stride
    h = np.exp(np.clip(m[2, ys, xs], -10, 10)) * stride
    to_input = g.heatmap_to_input(stride)
    cx = (xs + m[3, ys, xs]) * to_input[0, 0] + to_input[0, 2]
    cy = (ys + m[4, ys, xs]) * to_input[1, 1] + to_input[1, 2]
    out: F32 = np.stack([cx - (w - 1) / 2, cy - (h - 1) / 2, w, h, heat[ys, xs]], axis=1).astype(np.float32)
    return out


def boxes_to_frame(boxes: npt.ArrayLike, to_input: npt.ArrayLike, width: int, height: int) -> F32:
    """(M, 4+) boxes in detector-input pixels -> frame pixels, clipped to the frame (extra columns kept)."""
    b = np.array(boxes, dtype=np.float64, ndmin=2)
    inv = g.invert(to_input)
    k = inv[0, 0]  # the letterbox scales x and y alike and does not rotate
    x0 = b[:, 0] * k + inv[0, 2]
    y0 = b[:, 1] * k + inv[1, 2]
    x1 = (b[:, 0] + b[:, 2] - 1) * k + inv[0, 2]
    y1 = (b[:, 1] + b[:, 3] - 1) * k + inv[1, 2]
    x0, x1 = np.clip(x0, 0, width - 1), np.clip(x1, 0, width - 1)
    y0, y1 = np.clip(y0, 0, height - 1), np.clip(y1, 0, height - 1)
    out = b.copy()
    out[:, 0], out[:, 1], out[:, 2], out[:, 3] = x0, y0, np.maximum(x1 - x0 + 1, 1), np.maximum(y1 - y0 + 1, 1)
    result: F32 = out.astype(np.float32)
    return result


def iou(a: npt.ArrayLike, b: npt.ArrayLike) -> F64:
    """Pairwise intersection over union of (N, 4+) and (M, 4+) boxes (x, y, w, h): (N, M)."""
    p = np.array(a, dtype=np.float64, ndmin=2)[:, None, :4]
    q = np.array(b, dtype=np.float64, ndmin=2)[None, :, :4]
    iw = np.clip(np.minimum(p[..., 0] + p[..., 2], q[..., 0] + q[..., 2]) - np.maximum(p[..., 0], q[..., 0]), 0, None)
    ih = np.clip(np.minimum(p[..., 1] + p[..., 3], q[..., 1] + q[..., 3]) - np.maximum(p[..., 1], q[..., 1]), 0, None)
    inter = iw * ih
    union = p[..., 2] * p[..., 3] + q[..., 2] * q[..., 3] - inter
    out: F64 = np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0).astype(np.float64)
    return out


MATCH_IOU = 0.3
"""Boxes of consecutive frames overlapping at least this much can be the same person."""


def match(previous: npt.ArrayLike, current: npt.ArrayLike, min_iou: float = MATCH_IOU) -> list[tuple[int, int]]:
    """Pairs (i, j) of previous and current boxes that are the same people: the assignment of largest total
    overlap (Hungarian method, scipy's `linear_sum_assignment`), keeping pairs that overlap by `min_iou`."""
    a, b = np.array(previous, dtype=np.float64, ndmin=2), np.array(current, dtype=np.float64, ndmin=2)
    if not a.size or not b.size:
        return []
    from scipy.optimize import linear_sum_assignment  # here: importing it costs 0.3 s of every command's start

    overlap = iou(a, b)
    rows, cols = linear_sum_assignment(overlap, maximize=True)
    return [(int(i), int(j)) for i, j in zip(rows, cols, strict=True) if overlap[i, j] >= min_iou]
