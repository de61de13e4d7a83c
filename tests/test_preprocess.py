"""Normalisation and the one-warp preprocessing, against the plain float formula."""

from __future__ import annotations

import numpy as np
import pytest

from streampose.geometry import crop_transform, warp_image
from streampose.preprocess import Normalization, preprocess


def _reference(crops: np.ndarray, n: Normalization) -> np.ndarray:
    x = crops[..., ::-1] if n.rgb else crops
    out = (x.astype(np.float64) / 255.0 - np.asarray(n.mean)) / np.asarray(n.std)
    return out.transpose(0, 3, 1, 2)


OTHER = Normalization(mean=(0.1, 0.5, 0.9), std=(0.5, 0.25, 0.1), rgb=False)


@pytest.mark.parametrize("norm", [Normalization(), OTHER])
def test_table_normalisation_equals_the_formula(norm: Normalization) -> None:
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (3, 17, 23, 3), dtype=np.uint8)
    crops[0, 0, 0] = (0, 128, 255)  # both ends of the byte range, per channel
    got = norm.apply(crops)
    assert got.shape == (3, 3, 17, 23) and got.dtype == np.float32 and got.flags.c_contiguous
    np.testing.assert_allclose(got, _reference(crops, norm), atol=1e-5)
    # channel order: a pure-blue BGR pixel is the last (rgb) or first (bgr) network channel at its maximum
    blue = np.zeros((1, 1, 1, 3), np.uint8)
    blue[..., 0] = 255
    k = 2 if norm.rgb else 0
    assert norm.apply(blue)[0, k, 0, 0] == pytest.approx((1.0 - norm.mean[k]) / norm.std[k], abs=1e-5)


def test_preprocess_is_one_warp_then_normalisation() -> None:
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 256, (120, 90, 3), dtype=np.uint8), rng.integers(0, 256, (60, 200), dtype=np.uint8)]
    ts = np.stack([crop_transform((45, 60), 0.5, 64), crop_transform((100, 30), 0.3, 64)])
    norm = Normalization()
    got = preprocess(frames, ts, 64, norm)
    grey = np.repeat(frames[1][..., None], 3, axis=2)
    crops = np.stack([warp_image(frames[0], ts[0], 64), warp_image(grey, ts[1], 64)])
    np.testing.assert_allclose(got, _reference(crops, norm), atol=1e-5)
    with pytest.raises(ValueError, match="2 frames but 1 transforms"):
        preprocess(frames, ts[:1], 64, norm)
