"""Person detection's plain functions: letterbox geometry, CenterNet targets decoded back to the same boxes,
box overlap and matching, the person-box margin and the pose crop it gives; the training samples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from streampose import geometry as g
from streampose.detect import (
    PERSON_MARGIN,
    POSE_MARGIN,
    boxes_to_frame,
    decode,
    iou,
    letterbox,
    match,
    person_box,
    pose_crop,
)
from streampose.joints import LSP14
from streampose.model import HourglassConfig, StackedHourglass
from train.detect_data import DetectAugment, centernet_loss, centernet_targets, split_cells


def logit(p: float) -> float:
    return float(np.log(p / (1 - p)))


def test_letterbox_fits_the_whole_frame_centred() -> None:
    for w, h in [(1920, 1080), (480, 640), (256, 256)]:
        m = letterbox(w, h, 256)
        corners = g.transform_points(m, [[0, 0], [w - 1, h - 1]])
        k = 256 / max(w, h)
        assert m[0, 0] == pytest.approx(k) and m[1, 1] == pytest.approx(k) and m[0, 1] == 0
        # the frame's pixel centres span the input symmetrically, the longer side all of it
        assert corners[0] + corners[1] == pytest.approx([255.0, 255.0])
        assert max(corners[1] - corners[0]) == pytest.approx((max(w, h) - 1) * k)


def test_targets_decode_back_to_the_boxes() -> None:
    """Boxes -> CenterNet target maps -> (as if a network had output them) -> decode: the same boxes."""
    boxes = np.array([[20.3, 40.7, 60.0, 150.0], [150.0, 10.0, 12.0, 30.0]])
    target, weight = centernet_targets(boxes, 256, 4)
    assert weight[0].sum() == 2 and target[0].max() == pytest.approx(1.0)
    # the size is trained over each person's core, weighted to 1 per person: many pixels for the larger
    assert weight[1].sum() == pytest.approx(2.0) and (weight[1] > 0).sum() > 20
    assert (weight[0] > 0).sum() == 2 and np.all(weight[1][weight[0] > 0] > 0)
    assert set(np.round(np.exp(target[1][weight[1] > 0]) * 4, 3)) == {60.0, 12.0}
    maps = target.copy()
    maps[0] = np.vectorize(logit)(np.clip(target[0], 1e-4, 1 - 1e-4))
    found = decode(maps, stride=4, threshold=0.5)
    assert len(found) == 2
    order = np.argsort(found[:, 0])
    np.testing.assert_allclose(found[order, :4], boxes, atol=1e-3)
    assert (found[:, 4] > 0.99).all()


def test_decode_keeps_local_peaks_above_the_threshold_best_first() -> None:
    maps = np.zeros((5, 16, 16), np.float32)
    maps[0] = logit(0.01)
    maps[0, 3, 3], maps[0, 3, 4] = logit(0.6), logit(0.5)  # neighbours: one peak
    maps[0, 10, 12] = logit(0.9)
    maps[0, 14, 1] = logit(0.05)  # below the threshold
    found = decode(maps, stride=4, threshold=0.1)
    assert len(found) == 2 and found[0, 4] == pytest.approx(0.9) and found[1, 4] == pytest.approx(0.6)
    assert len(decode(maps, stride=4, top=1)) == 1


def test_boxes_back_to_the_frame_and_clipped() -> None:
    w, h = 1280, 720
    m = letterbox(w, h, 256)
    frame_box = np.array([[100.0, 200.0, 50.0, 300.0]])
    lo = g.transform_points(m, frame_box[:, :2])[0]
    hi = g.transform_points(m, frame_box[:, :2] + frame_box[:, 2:] - 1)[0]
    back = boxes_to_frame([[*lo, *(hi - lo + 1), 0.7]], m, w, h)
    np.testing.assert_allclose(back[0, :4], frame_box[0], atol=1e-3)
    assert back[0, 4] == pytest.approx(0.7)
    outside = boxes_to_frame([[-20.0, -20.0, 300.0, 300.0, 0.5]], m, w, h)
    assert (outside[0, :2] >= 0).all() and outside[0, 0] + outside[0, 2] <= w and outside[0, 1] + outside[0, 3] <= h


def test_iou_and_matching() -> None:
    a = np.array([[0, 0, 10, 10], [100, 100, 10, 20]], float)
    assert iou(a, a) == pytest.approx(np.eye(2))
    assert iou(a[:1], [[5, 0, 10, 10]])[0, 0] == pytest.approx(50 / 150)
    assert iou(a[:1], [[50, 50, 5, 5]])[0, 0] == 0
    b = np.array([[101, 99, 10, 20], [1, 1, 10, 10], [500, 500, 5, 5]], float)
    assert sorted(match(a, b)) == [(0, 1), (1, 0)]  # the best overall assignment; the far box is nobody's
    assert match(a, np.zeros((0, 4))) == [] and match(np.zeros((0, 4)), b) == []
    assert match(a[:1], [[8, 8, 10, 10]]) == []  # overlapping too little to be the same person


def test_person_box_margin_and_the_pose_crop() -> None:
    pts = np.array([[100.0, 50.0], [140.0, 250.0], [120.0, 150.0]])
    box = person_box(pts)
    assert box is not None
    pad = PERSON_MARGIN * 201
    np.testing.assert_allclose(box, [100 - pad, 50 - pad, 41 + 2 * pad, 201 + 2 * pad])
    clipped = person_box(pts, (130, 200))
    assert clipped is not None and clipped[0] + clipped[2] - 1 == pytest.approx(129)
    assert person_box(np.zeros((0, 2))) is None and person_box(pts, (50, 40)) is None
    center, scale = pose_crop(box)
    # the pose crop is the LSP protocol's: 1.25 x the joints' longer side, centred on them
    np.testing.assert_allclose(center, [120.0, 150.0])
    assert scale * g.PIXELS_PER_SCALE == pytest.approx(POSE_MARGIN * 201)


def test_mosaic_cells_tile_the_canvas() -> None:
    rng = np.random.default_rng(0)
    for n in (1, 2, 3, 4):
        for _ in range(20):
            cells = split_cells(rng, n, 256)
            assert len(cells) == n and sum(w * h for _, _, w, h in cells) == 256 * 256
            assert all(w > 0.3 * 256 * 0.35 and h > 0.3 * 256 * 0.35 for _, _, w, h in cells)


def test_the_detector_head_learns_a_box() -> None:
    """A few optimisation steps of the real detector network on one synthetic frame bring its loss down and
    its decoded top box onto the target: the head, the targets and the loss fit together."""
    torch.manual_seed(0)
    cfg = HourglassConfig(stacks=1, features=16, joints=1, input_size=64, depth=2, stem=8, head="centernet")
    net = StackedHourglass(cfg)
    x = torch.zeros(1, 3, 64, 64)
    x[:, :, 16:48, 24:40] = 2.0  # a bright figure
    boxes = np.array([[24.0, 16.0, 16.0, 32.0]])
    target, mask = centernet_targets(boxes, 64, 4)
    t, m = torch.from_numpy(target)[None], torch.from_numpy(mask)[None]
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    losses = []
    for _ in range(100):
        loss = centernet_loss(net(x), t, m)
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
    assert losses[-1] < 0.3 * losses[0]
    with torch.no_grad():  # batch statistics, as trained (one image gives no running statistics to speak of)
        found = decode(net.forward_all(x)[-1][0].numpy(), stride=4, threshold=0.0)
    assert iou(found[:1], boxes)[0, 0] > 0.7


def test_default_augmentation_covers_small_and_framed_people() -> None:
    aug = DetectAugment()
    assert aug.min_height <= 0.05 and aug.max_height == 1.0 and 0 < aug.mosaic_prob < 1


def test_where_people_overlap_the_smaller_ones_size_is_trained() -> None:
    """A child in front of an adult: the pixels around the child's centre learn the child's box, not the adult's."""
    adult, child = [100.0, 40.0, 80.0, 200.0], [126.0, 120.0, 28.0, 60.0]
    for boxes in ([adult, child], [child, adult]):  # whatever the order
        target, weight = centernet_targets(np.array(boxes), 256, 4)
        cx, cy = round((126 + 13.5) / 4 - 0.375), round((120 + 29.5) / 4 - 0.375)
        centre = np.argwhere(weight[0] > 0)
        assert len(centre) == 2
        assert np.exp(target[2, cy, cx]) * 4 == pytest.approx(60.0, abs=1e-3)
        assert 1.5 < weight[1].sum() < 2.0  # the child's core in full, the adult's around it
        assert np.exp(target[2][weight[1] > 0]).max() * 4 == pytest.approx(200.0, abs=1e-3)


def test_top1_recall_also_over_people_labelled_whole(tmp_path: Path) -> None:
    """A detector that boxes the whole person misses where the labels leave the legs out (their box covers the
    labelled joints only): the report says so apart, as recall over the fully labelled people."""
    import cv2

    from train.datasets import Annotation, Dataset, labelled
    from train.detect_data import annotation_box
    from train.detect_eval import top1

    ys = np.linspace(20, 180, 14)  # a standing figure, joints from head (top) to ankles (bottom)
    whole = np.stack([np.full(14, 100.0), ys[::-1], np.ones(14)], axis=1).astype(np.float32)
    legs_out = whole.copy()
    legs_out[:6, :2] = -1.0  # LSP order: the six leg joints first, unlabelled
    items = []
    for i, joints in enumerate((whole, legs_out)):
        path = tmp_path / f"im{i}.jpg"
        cv2.imwrite(str(path), np.zeros((200, 200, 3), np.uint8))
        items.append(Annotation(path, joints, (100.0, 100.0), 1.0))
    assert labelled(items[0]).all() and labelled(items[1]).sum() == 8
    data = Dataset("two", LSP14, items)
    box = annotation_box(items[0], 200, 200)

    def whole_person(image: np.ndarray) -> np.ndarray:
        return np.array([[*box, 0.9]], np.float32)

    rep = top1(whole_person, data, progress=False)  # type: ignore[arg-type]
    assert (rep.images, rep.recall, rep.complete, rep.complete_recall) == (2, 0.5, 1, 1.0)
    assert "100.0 % on the 1 whose person has every joint labelled" in rep.line()
