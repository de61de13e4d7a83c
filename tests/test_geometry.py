from __future__ import annotations

import cv2
import numpy as np
import pytest

from streampose import geometry as g


def random_crops(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 2000, (n, 2)), rng.uniform(0.2, 8.0, n), rng.uniform(-45, 45, n)


def test_round_trip_points_batched() -> None:
    center, scale, rot = random_crops(64)
    m = g.crop_transform(center, scale, 256, rot)
    assert m.shape == (64, 2, 3)
    pts = np.random.default_rng(1).uniform(-500, 2500, (64, 17, 2))
    back = g.transform_points(g.invert(m), g.transform_points(m, pts))
    assert np.abs(back - pts).max() < 1e-4


def test_compose_with_inverse_is_identity() -> None:
    center, scale, rot = random_crops(8)
    m = g.crop_transform(center, scale, 128, rot)
    ident = g.compose(g.invert(m), m)
    np.testing.assert_allclose(ident, np.broadcast_to([[1, 0, 0], [0, 1, 0]], ident.shape), atol=1e-9)


def test_mpii_convention() -> None:
    # the centre lands on the crop's centre pixel; 200*scale image pixels span the crop
    m = g.crop_transform((500.0, 300.0), 2.0, 256)
    np.testing.assert_allclose(g.transform_points(m, [[500.0, 300.0]]), [[127.5, 127.5]])
    left_edge, right_edge = g.transform_points(m, [[300.0, 300.0], [700.0, 300.0]])
    assert right_edge[0] - left_edge[0] == pytest.approx(256.0)


def test_rotation_is_counter_clockwise_like_opencv() -> None:
    m = g.crop_transform((100.0, 100.0), 1.0, 200, 30.0)
    cv = cv2.getRotationMatrix2D((100.0, 100.0), 30.0, 1.0)
    # same linear part as OpenCV's rotation, and the same centre mapping
    np.testing.assert_allclose(m[:, :2], cv[:, :2], atol=1e-12)


def test_broadcasting_scalar_and_batch() -> None:
    m1 = g.crop_transform((10.0, 20.0), 1.5, 64)
    assert m1.shape == (2, 3)
    mb = g.crop_transform([(10.0, 20.0)] * 3, 1.5, 64, [0.0, 10.0, 20.0])
    assert mb.shape == (3, 2, 3)
    np.testing.assert_allclose(mb[0], m1)


def test_image_warp_agrees_with_point_transform() -> None:
    """A bright dot drawn in the image is found in the crop where transform_points puts it."""
    img = np.zeros((480, 640, 3), np.uint8)
    dot = np.array([400.0, 150.0])
    cv2.circle(img, (400, 150), 3, (255, 255, 255), -1)
    m = g.crop_transform((380.0, 170.0), 0.4, 128, rotation=25.0)
    crop = g.warp_image(img, m, 128)[..., 0].astype(np.float64)
    ys, xs = np.nonzero(crop > 0)
    w = crop[ys, xs]
    found = np.array([(xs * w).sum() / w.sum(), (ys * w).sum() / w.sum()])
    expected = g.transform_points(m, dot[None])[0]
    assert np.linalg.norm(found - expected) < 0.1


def test_box_center_scale_round_trip() -> None:
    boxes = np.array([[10.0, 20.0, 100.0, 100.0], [0.0, 0.0, 50.0, 50.0]])
    c, s = g.box_to_center_scale(boxes, margin=1.0)
    np.testing.assert_allclose(g.center_scale_to_box(c, s), boxes)
    c2, s2 = g.box_to_center_scale([0.0, 0.0, 40.0, 100.0], margin=1.25)
    assert s2 == pytest.approx(1.25 * 100 / 200)
    np.testing.assert_allclose(c2, [19.5, 49.5])


def test_heatmap_to_input_maps_pixel_blocks_to_their_centre() -> None:
    m = g.heatmap_to_input(4)
    np.testing.assert_allclose(g.transform_points(m, [[0.0, 0.0], [1.0, 2.0]]), [[1.5, 1.5], [5.5, 9.5]])


@pytest.mark.parametrize("bad", [{"scale": 0.0}, {"center": (1.0, 2.0, 3.0)}])
def test_bad_inputs(bad: dict[str, object]) -> None:
    args: dict[str, object] = {"center": (0.0, 0.0), "scale": 1.0, "size": 64, **bad}
    with pytest.raises(ValueError):
        g.crop_transform(**args)  # type: ignore[arg-type]
