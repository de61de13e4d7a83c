"""Crop geometry: person (center, scale) <-> square crop, both ways, for points and images.

Conventions, used everywhere in streampose:
- Pixel centres sit at integer coordinates (OpenCV's convention), so `cv2.warpAffine` with these
  matrices is exact and a keypoint at (x, y) is the centre of pixel (x, y).
- A person is `center` (x, y) and `scale`, with the person's height ~ 200 * scale pixels (the
  MPII convention). The crop is the square of side 200 * scale around the centre, resampled to
  `size` x `size` pixels, optionally rotated by `rotation` degrees (counter-clockwise as seen).
- Affine transforms are (..., 2, 3) float64 arrays mapping source -> destination points; every
  function broadcasts over leading batch dimensions.
"""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
ArrayLike = npt.ArrayLike

PIXELS_PER_SCALE = 200.0


def crop_transform(center: ArrayLike, scale: ArrayLike, size: int, rotation: ArrayLike = 0.0) -> F64:
    """Affine (..., 2, 3) taking image points to crop points.

    `center` is (..., 2), `scale` and `rotation` broadcast against its leading dimensions.
    """
    c = np.asarray(center, dtype=np.float64)
    s = np.asarray(scale, dtype=np.float64)
    r = np.deg2rad(np.asarray(rotation, dtype=np.float64))
    if c.shape[-1:] != (2,):
        raise ValueError(f"center must have shape (..., 2), got {c.shape}")
    if np.any(s <= 0):
        raise ValueError("scale must be positive")
    batch = np.broadcast_shapes(c.shape[:-1], s.shape, r.shape)
    k = size / (PIXELS_PER_SCALE * s)  # crop pixels per image pixel
    cos, sin = np.cos(r) * k, np.sin(r) * k
    half = (size - 1) / 2.0
    cx, cy = c[..., 0], c[..., 1]
    m = np.empty((*batch, 2, 3), dtype=np.float64)
    # Counter-clockwise as seen on screen, with y pointing down, is a clockwise matrix.
    m[..., 0, 0] = cos
    m[..., 0, 1] = sin
    m[..., 1, 0] = -sin
    m[..., 1, 1] = cos
    m[..., 0, 2] = half - (cos * cx + sin * cy)
    m[..., 1, 2] = half - (-sin * cx + cos * cy)
    return m


def invert(m: ArrayLike) -> F64:
    """Inverse of (..., 2, 3) affine transforms."""
    a = np.asarray(m, dtype=np.float64)
    lin = a[..., :2]
    inv = np.linalg.inv(lin)
    out = np.empty_like(a)
    out[..., :2] = inv
    out[..., 2] = -np.einsum("...ij,...j->...i", inv, a[..., 2])
    return out


def compose(outer: ArrayLike, inner: ArrayLike) -> F64:
    """The transform applying `inner` first, then `outer`."""
    o = np.asarray(outer, dtype=np.float64)
    i = np.asarray(inner, dtype=np.float64)
    out = np.empty(np.broadcast_shapes(o.shape, i.shape), dtype=np.float64)
    out[..., :2] = o[..., :2] @ i[..., :2]
    out[..., 2] = np.einsum("...ij,...j->...i", o[..., :2], i[..., 2]) + o[..., 2]
    return out


def transform_points(m: ArrayLike, points: ArrayLike) -> F64:
    """Apply (..., 2, 3) transforms to (..., K, 2) points (extra trailing channels are kept)."""
    a = np.asarray(m, dtype=np.float64)
    p = np.asarray(points, dtype=np.float64)
    xy: F64 = np.einsum("...ij,...kj->...ki", a[..., :2], p[..., :2]) + a[..., None, :, 2]
    if p.shape[-1] == 2:
        return xy
    return np.concatenate([xy, np.broadcast_to(p[..., 2:], (*xy.shape[:-1], p.shape[-1] - 2))], axis=-1)


def heatmap_to_input(stride: int) -> F64:
    """Heatmap pixel -> network-input pixel. Heatmap pixel j covers input pixels
    stride*j ... stride*j + stride-1, whose centre is stride*j + (stride-1)/2."""
    o = (stride - 1) / 2.0
    return np.array([[stride, 0.0, o], [0.0, stride, o]])


def warp_image(
    image: npt.NDArray[np.uint8], m: ArrayLike, size: int, border: int = cv2.BORDER_CONSTANT
) -> npt.NDArray[np.uint8]:
    """Resample `image` through the image->crop transform `m` (2, 3) into a size x size crop."""
    out = cv2.warpAffine(
        image, np.asarray(m, dtype=np.float64), (size, size), flags=cv2.INTER_LINEAR, borderMode=border
    )
    return np.asarray(out, dtype=np.uint8)


def box_to_center_scale(box: ArrayLike, margin: float = 1.25) -> tuple[F64, F64]:
    """(..., 4) boxes (x, y, w, h) -> centres (..., 2) and scales (...,) of the square crop whose
    side is `margin` times the box's longer side."""
    b = np.asarray(box, dtype=np.float64)
    if b.shape[-1:] != (4,):
        raise ValueError(f"box must be (x, y, w, h), got shape {b.shape}")
    if np.any(b[..., 2:] <= 0):
        raise ValueError("box width and height must be positive")
    center = b[..., :2] + (b[..., 2:] - 1) / 2.0
    side = margin * np.max(b[..., 2:], axis=-1)
    return center, side / PIXELS_PER_SCALE


def center_scale_to_box(center: ArrayLike, scale: ArrayLike) -> F64:
    """The crop square as (..., 4) boxes (x, y, w, h) in image pixels, the inverse of
    `box_to_center_scale` with margin 1."""
    c = np.asarray(center, dtype=np.float64)
    side = np.asarray(scale, dtype=np.float64) * PIXELS_PER_SCALE
    return np.concatenate([c - (side[..., None] - 1) / 2.0, np.stack([side, side], axis=-1)], axis=-1)
