from __future__ import annotations

import numpy as np
import pytest

from streampose import geometry as g
from streampose.decode import BLUR, decode, gaussian_blur, pose_score, quarter_peaks, taylor_peaks


def gaussians(centres: np.ndarray, size: int, sigma: float, peak: float = 1.0) -> np.ndarray:
    """(..., 2) centres in heatmap pixels -> (..., size, size) unit-height Gaussians."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    dx = xs - centres[..., 0, None, None]
    dy = ys - centres[..., 1, None, None]
    return (peak * np.exp(-(dx**2 + dy**2) / (2 * sigma**2))).astype(np.float32)


@pytest.mark.parametrize("sigma", [1.0, 1.5, 2.0])
def test_taylor_beats_quarter_shift_on_subpixel_gaussians(sigma: float) -> None:
    rng = np.random.default_rng(42)
    size = 64
    centres = rng.uniform(4, size - 5, size=(32, 16, 2))  # random sub-pixel centres, batch x joints
    hm = gaussians(centres, size, sigma)
    err_taylor = np.linalg.norm(taylor_peaks(hm)[0] - centres, axis=-1).mean()
    err_quarter = np.linalg.norm(quarter_peaks(hm) - centres, axis=-1).mean()
    assert err_taylor <= 0.05
    assert 0.1 <= err_quarter <= 0.25  # the classic baseline's known error
    assert err_taylor < err_quarter / 4


def test_taylor_with_blur_still_accurate() -> None:
    rng = np.random.default_rng(1)
    centres = rng.uniform(8, 56, size=(8, 14, 2))
    hm = gaussians(centres, 64, 1.0)
    assert np.linalg.norm(taylor_peaks(hm, blur=5)[0] - centres, axis=-1).mean() <= 0.05
    with pytest.raises(ValueError, match="odd"):
        taylor_peaks(hm, blur=4)


def test_blur_is_opencvs_map_by_map_at_any_batch() -> None:
    """The maps go through OpenCV 128 channels at a time: the same as blurring each alone, past a chunk's end too."""
    import cv2

    hm = np.random.default_rng(5).random((10, 14, 32, 24), dtype=np.float32)  # 140 maps: two chunks
    for kernel in (3, 5):
        one_by_one = np.stack([cv2.GaussianBlur(m, (kernel, kernel), 0) for m in hm.reshape(-1, 32, 24)])
        peaks = hm.reshape(-1, 32, 24).max(axis=(1, 2), keepdims=True)
        one_by_one *= peaks / one_by_one.max(axis=(1, 2), keepdims=True)
        np.testing.assert_allclose(gaussian_blur(hm, kernel), one_by_one.reshape(hm.shape), rtol=1e-5, atol=1e-6)
    assert gaussian_blur(hm[:1, :1], 3).shape == (1, 1, 32, 24)
    np.testing.assert_array_equal(gaussian_blur(np.zeros((2, 8, 8), np.float32), 3), 0.0)


def test_decode_blurs_by_default_and_prefers_the_broad_mode_to_a_spike() -> None:
    """A joint with two answers: a one-pixel spike a little higher than a broad peak elsewhere. Refining the raw map
    takes the spike; `decode`'s default blur (`BLUR`) takes the broad peak, as the network's real maps want."""
    assert BLUR % 2 == 1
    hm = gaussians(np.array([[[20.3, 9.6]]]), 32, 1.5)
    hm[0, 0, 24, 6] = 1.05
    identity = np.eye(2, 3)[None]  # frame = crop; a heatmap pixel j is crop pixel 4j + 1.5 (stride 4)
    blurred, raw = decode(hm, identity), decode(hm, identity, blur=0)
    np.testing.assert_allclose((raw[0, 0, :2] - 1.5) / 4, [6, 24], atol=0.01)
    np.testing.assert_allclose((blurred[0, 0, :2] - 1.5) / 4, [20.3, 9.6], atol=0.1)
    assert blurred[0, 0, 2] == raw[0, 0, 2] == 1.0  # the confidence is the raw map's height (1.05), clipped


def test_noisy_heatmaps_do_not_produce_wild_offsets() -> None:
    rng = np.random.default_rng(2)
    centres = rng.uniform(4, 28, size=(16, 14, 2))
    hm = gaussians(centres, 32, 1.0) + rng.normal(0, 0.05, size=(16, 14, 32, 32)).astype(np.float32)
    xy, _ = taylor_peaks(hm)
    argmax_dist = np.abs(xy - np.round(xy))  # offsets are bounded by one pixel
    assert argmax_dist.max() <= 1.0
    assert np.linalg.norm(xy - centres, axis=-1).mean() < 0.2


def test_flat_and_border_peaks_fall_back_to_argmax() -> None:
    hm = np.zeros((1, 2, 16, 16), np.float32)
    hm[0, 1, 0, 5] = 1.0  # peak on the border
    xy, _ = taylor_peaks(hm)
    np.testing.assert_array_equal(xy[0, 0], [0, 0])  # all-zero map: argmax at the origin
    np.testing.assert_array_equal(xy[0, 1], [5, 0])


def test_decode_maps_back_to_frame_pixels() -> None:
    """Gaussians drawn where the geometry puts known frame points decode back to those points."""
    rng = np.random.default_rng(3)
    n, k, size, stride = 4, 14, 256, 4
    centers = rng.uniform(300, 700, (n, 2))
    scales = rng.uniform(1.0, 3.0, n)
    rots = rng.uniform(-30, 30, n)
    m = g.crop_transform(centers, scales, size, rots)
    frame_pts = centers[:, None, :] + rng.uniform(-60, 60, (n, k, 2))
    image_to_heat = g.compose(g.invert(g.heatmap_to_input(stride)), m)
    heat_pts = g.transform_points(image_to_heat, frame_pts)
    peaks = rng.uniform(0.3, 0.9, (n, k))
    hm = gaussians(heat_pts, size // stride, 1.0) * peaks[..., None, None].astype(np.float32)
    kp = decode(hm, m, stride=stride)
    assert kp.shape == (n, k, 3) and kp.dtype == np.float32
    # 0.05 heatmap px of error at most, in frame pixels
    frame_per_heat = stride * 200 * scales / size
    err = np.linalg.norm(kp[..., :2] - frame_pts, axis=-1)
    assert (err.mean(axis=1) <= 0.05 * frame_per_heat).all()
    np.testing.assert_allclose(kp[..., 2], peaks, atol=1e-6)
    np.testing.assert_allclose(pose_score(kp), peaks.mean(axis=1), atol=1e-6)


def test_confidence_is_clipped() -> None:
    hm = np.full((1, 2, 8, 8), -1.0, np.float32)
    hm[0, 0, 4, 4] = 3.0
    kp = decode(hm, g.crop_transform((0.0, 0.0), 1.0, 32)[None])
    assert kp[0, 0, 2] == 1.0 and kp[0, 1, 2] == 0.0


def test_decode_rejects_wrong_rank() -> None:
    with pytest.raises(ValueError, match="N, K, h, w"):
        decode(np.zeros((3, 8, 8), np.float32), np.zeros((1, 2, 3)))
