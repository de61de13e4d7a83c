"""Normalisation and the one-warp preprocessing, against the plain float formula; video frames cropped
from their 4:2:0 planes, against FFmpeg's own conversion."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from streampose.geometry import crop_transform, warp_image
from streampose.preprocess import YUV420, Normalization, preprocess
from streampose.sources import _pixels


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


def test_video_frames_are_cropped_from_their_planes_as_ffmpeg_would_convert_them(studio_clip: Path) -> None:
    """A decoded video frame stays 4:2:0 until cropped: the crop (and the whole frame, for drawing) matches
    FFmpeg's own BGR conversion of the same frame, and black lies outside the frame as with BGR input."""
    import av

    with av.open(str(studio_clip)) as container:
        frame = next(container.decode(video=0))
        pixels = _pixels(frame)
        reference = frame.to_ndarray(format="bgr24")
    assert isinstance(pixels, YUV420) and pixels.shape == reference.shape
    assert pixels.y.strides[0] > pixels.y.shape[1]  # views of the decoder's padded rows, not copies
    h, w = reference.shape[:2]
    full = np.abs(pixels.bgr().astype(int) - reference)
    assert full.mean() < 2.0 and np.percentile(full, 99) <= 3  # rounding (swapped chroma: 38 and 100)
    # a crop reaching past the frame's corner, and one inside it
    for center, scale in (((0.1 * w, 0.15 * h), 4.0), ((0.5 * w, 0.55 * h), 2.0)):
        m = crop_transform(center, scale, 128)
        diff = np.abs(pixels.warp(m, 128).astype(int) - warp_image(reference, m, 128))
        assert diff.mean() < 2.5 and np.percentile(diff, 95) <= 6, (center, diff.mean())
    net_in = [preprocess([f], m[None], 128, Normalization()) for f in (pixels, reference)]
    assert np.abs(net_in[0] - net_in[1]).mean() < 0.04  # about 2 of 255 levels
    outside = pixels.warp(crop_transform((-5000.0, -5000.0), 1.0, 64), 64)
    assert outside.max() == 0
    with pytest.raises(ValueError, match="even size"):
        YUV420(pixels.y[:-1], pixels.u, pixels.v)


def test_frames_that_opencv_would_convert_differently_are_converted_by_ffmpeg() -> None:
    import av

    frame = av.VideoFrame(64, 48, "yuv420p")
    for plane in frame.planes:
        np.frombuffer(plane, np.uint8)[:] = 100
    assert isinstance(_pixels(frame), YUV420)
    frame.colorspace = 1  # BT.709: OpenCV converts 4:2:0 as BT.601 only
    assert isinstance(_pixels(frame), np.ndarray) and _pixels(frame).shape == (48, 64, 3)
    odd = av.VideoFrame(63, 47, "yuv420p")
    assert isinstance(_pixels(odd), np.ndarray)
