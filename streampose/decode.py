"""Heatmaps -> keypoints: argmax, sub-pixel refinement, mapping back to frame pixels.

Refinement fits the log of the heatmap around its peak with a second-order Taylor expansion
(the "distribution-aware" decoding of Zhang et al., CVPR 2020). A Gaussian's log is exactly a
quadratic, so on Gaussian-shaped peaks this recovers the centre to numerical precision, where
the classic quarter-pixel shift towards the higher neighbour leaves ~0.1-0.2 px of error.
Everything is vectorised over batch and joints; nothing is ever cast to int after refinement.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import numpy.typing as npt

from streampose.geometry import compose, heatmap_to_input, invert, transform_points

F32 = npt.NDArray[np.float32]
Heatmaps = npt.NDArray[np.floating]

_EPS = 1e-10


def argmax_2d(heatmaps: Heatmaps) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], F32]:
    """Integer peak (x, y) and its value for (..., H, W) heatmaps."""
    h, w = heatmaps.shape[-2:]
    flat = heatmaps.reshape(*heatmaps.shape[:-2], h * w)
    idx = np.argmax(flat, axis=-1)
    peak = np.take_along_axis(flat, idx[..., None], axis=-1)[..., 0]
    return idx % w, idx // w, peak.astype(np.float32)


def _neighbourhood(heatmaps: Heatmaps, x: npt.NDArray[np.intp], y: npt.NDArray[np.intp]) -> npt.NDArray[np.float64]:
    """The 3x3 patch around each peak, (..., 3, 3), indices clamped inside the map."""
    h, w = heatmaps.shape[-2:]
    offs = np.arange(-1, 2)
    ys = np.clip(y[..., None] + offs, 0, h - 1)  # (..., 3)
    xs = np.clip(x[..., None] + offs, 0, w - 1)
    flat = heatmaps.reshape(*heatmaps.shape[:-2], h * w)
    idx = ys[..., :, None] * w + xs[..., None, :]  # (..., 3, 3)
    patch = np.take_along_axis(flat, idx.reshape(*idx.shape[:-2], 9), axis=-1)
    # float64 for the fit, after taking the 9 values (converting the whole maps first cost 3x the decode)
    out: npt.NDArray[np.float64] = patch.reshape(*idx.shape).astype(np.float64)
    return out


def quarter_peaks(heatmaps: Heatmaps) -> F32:
    """The classic refinement: argmax shifted a quarter pixel towards the higher neighbour.
    Kept as the baseline the tests measure the Taylor refinement against. Returns (..., 2)."""
    x, y, _ = argmax_2d(heatmaps)
    p = _neighbourhood(heatmaps, x, y)
    dx = np.sign(p[..., 1, 2] - p[..., 1, 0])
    dy = np.sign(p[..., 2, 1] - p[..., 0, 1])
    return np.stack([x + 0.25 * dx, y + 0.25 * dy], axis=-1).astype(np.float32)


def taylor_peaks(heatmaps: Heatmaps, blur: int = 0) -> tuple[F32, F32]:
    """Sub-pixel peaks (..., 2) in heatmap pixels by a Newton step on the log-heatmap, and the
    fitted peak heights (...), which do not depend on where the peak falls within its pixel.

    `blur` (odd kernel size, 0 = off) smooths each map with a Gaussian first, which makes
    network outputs closer to the Gaussian the refinement assumes. Where the local fit is not a
    maximum (flat or saddle-shaped patches) the integer argmax is kept.
    """
    hm = np.asarray(heatmaps)
    if blur:
        hm = gaussian_blur(hm, blur)
    x, y, peak = argmax_2d(hm)
    # log of the peak-normalised patch, so the clamp at _EPS is relative to the peak
    p = _neighbourhood(hm, x, y)
    p = np.log(np.maximum(p / np.maximum(p[..., 1:2, 1:2], _EPS), _EPS))
    gx = 0.5 * (p[..., 1, 2] - p[..., 1, 0])
    gy = 0.5 * (p[..., 2, 1] - p[..., 0, 1])
    hxx = p[..., 1, 2] - 2 * p[..., 1, 1] + p[..., 1, 0]
    hyy = p[..., 2, 1] - 2 * p[..., 1, 1] + p[..., 0, 1]
    hxy = 0.25 * (p[..., 2, 2] - p[..., 2, 0] - p[..., 0, 2] + p[..., 0, 0])
    det = hxx * hyy - hxy * hxy
    h, w = hm.shape[-2:]
    interior = (x > 0) & (x < w - 1) & (y > 0) & (y < h - 1)
    ok = interior & (det > 1e-12) & (hxx < 0)  # Hessian negative definite: a real maximum
    safe = np.where(ok, det, 1.0)
    # Newton step: -H^-1 g, with the 2x2 inverse written out
    ox = np.where(ok, -(hyy * gx - hxy * gy) / safe, 0.0)
    oy = np.where(ok, -(hxx * gy - hxy * gx) / safe, 0.0)
    # the argmax pixel is the nearest to the true peak, so a larger step means a poor fit
    ox, oy = np.clip(ox, -1.0, 1.0), np.clip(oy, -1.0, 1.0)
    # height of the fitted quadratic at the refined peak, relative to the argmax pixel's value
    rise = gx * ox + gy * oy + 0.5 * (hxx * ox * ox + 2 * hxy * ox * oy + hyy * oy * oy)
    height = peak * np.exp(np.clip(rise, 0.0, 1.0))  # a maximum is never below its argmax pixel
    return np.stack([x + ox, y + oy], axis=-1).astype(np.float32), height.astype(np.float32)


_CV_CHANNELS = 128
"""The most channels OpenCV's Python binding filters in one call."""


def gaussian_blur(heatmaps: Heatmaps, kernel: int) -> npt.NDArray[np.float32]:
    """Gaussian-blur every (H, W) map of a (..., H, W) array (OpenCV's kernel for that size, reflected borders),
    keeping each map's maximum. The maps go through OpenCV as the channels of one image, 128 at a time: one call
    per batch rather than one per map (a batch of 32 people took 2.5 ms map by map)."""
    if kernel % 2 == 0:
        raise ValueError(f"blur kernel must be odd, got {kernel}")
    hm = np.asarray(heatmaps, dtype=np.float32)
    h, w = hm.shape[-2:]
    maps = hm.reshape(-1, h, w)
    out = np.empty_like(maps)
    for start in range(0, len(maps), _CV_CHANNELS):
        channels = np.ascontiguousarray(maps[start:start + _CV_CHANNELS].transpose(1, 2, 0))
        blurred = cv2.GaussianBlur(channels, (kernel, kernel), 0)
        out[start:start + _CV_CHANNELS] = blurred.reshape(h, w, -1).transpose(2, 0, 1)
    peak_in, peak_out = maps.max(axis=(1, 2), keepdims=True), out.max(axis=(1, 2), keepdims=True)
    out *= np.where(peak_out > 0, peak_in / np.where(peak_out > 0, peak_out, 1.0), 1.0)
    return out.reshape(hm.shape)


BLUR = 3
"""Kernel of the blur `decode` applies before refining (DARK's "distribution modulation", Zhang et al. CVPR 2020):
a network's peaks are not the Gaussians the Taylor step assumes, and where a joint has two modes the blur favours
the broad one over a one-pixel spike. Chosen on training images (LSP 501-900 / LSPET 1001-2000, crop given, PCK@0.2
limbs against no blur): `hg2-lite` 3: +0.42 / +0.03, 5: +0.64 / -0.14, 7: +0.71 / -0.51; `hg2` 3: +0.08 / +0.55,
5: +0.00 / +0.49. On the validation splits (LSPET 8501-9000 / LSP 901-1000) 3 gave `hg2-lite` +0.14 / +0.67 and
`hg2` +0.03 / +0.45 (2026-12-07, the weights shipped then)."""


def decode(heatmaps: Heatmaps, crop_transforms: npt.ArrayLike, stride: int = 4, blur: int = BLUR) -> F32:
    """(N, K, h, w) heatmaps of crops made with image->crop transforms (N, 2, 3) ->
    (N, K, 3) keypoints: x, y in original frame pixels and a confidence in [0, 1].

    Confidence is the fitted peak height clipped to [0, 1]: targets are unit-height
    Gaussians, so a well-trained network's peak reads as a probability-like score. It is read from the maps
    as they are, the position from the maps blurred (`BLUR`; `blur=0`: not blurred): a blurred peak is lower
    and wider, and the confidence thresholds (`crop.MIN_CONF`, ...) were set on the network's own heights.
    """
    hm = np.asarray(heatmaps)
    if hm.ndim != 4:
        raise ValueError(f"heatmaps must be (N, K, h, w), got shape {hm.shape}")
    xy, peak = taylor_peaks(hm)  # (N, K, 2) heatmap pixels, (N, K)
    if blur:  # where: from the blurred maps; how sure: from the network's own peak, as the thresholds expect
        xy = taylor_peaks(hm, blur=blur)[0]
    heat_to_image = compose(invert(crop_transforms), heatmap_to_input(stride))  # (N, 2, 3)
    frame_xy = transform_points(heat_to_image, xy)
    conf = np.clip(peak, 0.0, 1.0)
    return np.concatenate([frame_xy, conf[..., None]], axis=-1).astype(np.float32)


def unflip_heatmaps(heatmaps: npt.NDArray[np.float32], flip: Sequence[int]) -> npt.NDArray[np.float32]:
    """Heatmaps (N, K, h, w) of horizontally mirrored crops, mapped back to the unmirrored crops:
    mirror the maps and swap left/right channels (`flip` is the joint set's permutation). Exact:
    heatmap pixel j of a mirrored S-pixel crop is pixel S/stride - 1 - j of the original."""
    return np.ascontiguousarray(heatmaps[:, list(flip), :, ::-1])


def pose_score(keypoints: npt.ArrayLike) -> F32:
    """Overall pose confidence: the mean joint confidence, (..., K, 3) -> (...)."""
    return np.asarray(np.mean(np.asarray(keypoints)[..., 2], axis=-1), dtype=np.float32)
