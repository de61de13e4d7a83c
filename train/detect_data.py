"""Training samples for the person detector: whole frames made of pose images, with CenterNet targets.

LSP and LSPET images are each one person, labelled by its joints; the box is `detect.person_box` of the joints
that carry coordinates (occluded ones too). A sample is a black square canvas, the network input, holding one
image (half the time framed as photos frame people, 40-100 % of the height; otherwise zoomed out, 5-100 %,
log-uniform; anywhere in the frame) or, 30 % of the time, a mosaic of 2-4 images in
cells of a random split, each with its person at a random size and place inside its cell; the rest of each
image shows around its person, so edges, backgrounds and the unlabelled people behind are negatives. Half the
canvases start from another image blurred beyond recognition (sigma 1/32 of the side) rather than black, so
that an image's edge is no cue for a person. Then a
horizontal flip, per-channel colour gain, brightness, greyscale (p 0.1) and Gaussian blur (p 0.2).

Targets (Zhou et al. 2019, with TTFNet's elliptical Gaussians): per person a Gaussian on the centre heatmap at
the centre's heatmap pixel, sigma 0.54 / 6 of the box's width and height; the box's log width and height in
heatmap pixels over the Gaussian's core, and at the centre pixel its sub-pixel offset. Randomness comes from
(seed, epoch, index), so resumed runs draw the same samples, as pose training does.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import torch
from tqdm import tqdm

from streampose import geometry as g
from streampose.detect import person_box
from streampose.preprocess import Normalization
from streampose.sources import read_image
from train.datasets import Annotation, Dataset, labelled
from train.pack import Pack

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
U8 = npt.NDArray[np.uint8]

GAUSSIAN_ALPHA = 0.54
"""TTFNet's share of the box that the centre Gaussian spans (sigma = alpha * side / 6)."""
SIZE_REGION = 0.3
"""The box size is trained where a person's centre Gaussian is at least this (its core, 0.28 of the box across)."""


@dataclass(frozen=True)
class DetectAugment:
    mosaic_prob: float = 0.3
    background_prob: float = 0.5
    min_height: float = 0.05
    max_height: float = 1.0
    framed_prob: float = 0.5
    """A single image's person is as photos and videos frame people (`framed` share of the height, uniform)
    this often; otherwise anywhere from `min_height` to `max_height`, log-uniform."""
    framed: tuple[float, float] = (0.4, 1.0)
    flip_prob: float = 0.5
    color: float = 0.25
    gray_prob: float = 0.1
    blur_prob: float = 0.2


def annotation_box(a: Annotation, width: int, height: int) -> F64:
    """The person box of an annotation, from every joint with coordinates (`labelled`); the whole image if none
    has any."""
    box = person_box(a.joints[labelled(a), :2], (width, height))
    return box if box is not None else np.array([0.0, 0.0, float(width), float(height)])


class FrameImages:
    """The dataset's images decoded once into memory (LSPET's 9,000 small JPEGs take ~1 GB) and their boxes."""

    def __init__(self, dataset: Dataset) -> None:
        items = dataset.items
        with ThreadPoolExecutor(os.cpu_count()) as pool:
            self.images: list[U8] = list(tqdm(pool.map(lambda a: read_image(a.image), items), total=len(items),
                                              desc="loading images", unit="img", disable=None))
        self.boxes = [annotation_box(a, im.shape[1], im.shape[0]) for a, im in zip(items, self.images, strict=True)]

    @classmethod
    def from_pack(cls, pack: Pack, index: npt.NDArray[np.int64]) -> FrameImages:
        """A pack's images: whole frames (a frames pack: what the detector should learn from), or person crops
        with the context the pack kept around them."""
        self = cls.__new__(cls)
        self.images = [pack.images[i] for i in index]
        self.boxes = []
        for i, image in zip(index, self.images, strict=True):
            a = Annotation(pack.path, np.nan_to_num(pack.joints[i], nan=-1e4), (0.0, 0.0), 1.0)
            self.boxes.append(annotation_box(a, image.shape[1], image.shape[0]))
        return self

    def __len__(self) -> int:
        return len(self.images)


def split_cells(rng: np.random.Generator, n: int, size: int) -> list[tuple[int, int, int, int]]:
    """n cells (x, y, w, h) tiling a size x size canvas: halves, a half and two quarters, or four quarters,
    split at random points between 35 and 65 %."""
    full = (0, 0, size, size)
    if n == 1:
        return [full]

    def cut(c: tuple[int, int, int, int], vertical: bool) -> list[tuple[int, int, int, int]]:
        x, y, w, h = c
        t = float(rng.uniform(0.35, 0.65))
        if vertical:
            a = round(w * t)
            return [(x, y, a, h), (x + a, y, w - a, h)]
        a = round(h * t)
        return [(x, y, w, a), (x, y + a, w, h - a)]

    vertical = bool(rng.random() < 0.5)
    cells = cut(full, vertical)
    if n >= 3:
        cells = cut(cells[0], not vertical) + cells[1:]
    if n == 4:
        cells = cells[:2] + cut(cells[2], not vertical)
    return cells


def place(rng: np.random.Generator, box: F64, cell: tuple[int, int, int, int], canvas: int, aug: DetectAugment
          ) -> F64:
    """Image -> canvas transform (2, 3) putting the person box at a random size and place inside the cell."""
    cx, cy, cw, ch = cell
    bw, bh = float(box[2]), float(box[3])
    fit = min(cw / bw, ch / bh)
    if (cw, ch) == (canvas, canvas) and rng.random() < aug.framed_prob:
        s = min(float(rng.uniform(*aug.framed)) * canvas / bh, fit)
    else:
        lo = aug.min_height * canvas / bh
        hi = min(aug.max_height * canvas / bh, fit)
        s = hi if lo >= hi else float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    px = cx + rng.uniform(0, max(cw - s * bw, 0))
    py = cy + rng.uniform(0, max(ch - s * bh, 0))
    return np.array([[s, 0.0, px - s * box[0]], [0.0, s, py - s * box[1]]])


def compose_frame(rng: np.random.Generator, images: FrameImages, first: int, size: int, aug: DetectAugment
                  ) -> tuple[U8, F64]:
    """A canvas (size, size, 3) and its person boxes (M, 4): `first` and, in a mosaic, 1-3 random others."""
    n = 1 if rng.random() >= aug.mosaic_prob else int(rng.integers(2, 5))
    picks = [first, *(int(i) for i in rng.integers(0, len(images), n - 1))]
    canvas = np.zeros((size, size, 3), np.uint8)
    if rng.random() < aug.background_prob:  # colours and texture instead of black, blurred past recognising anyone
        other = images.images[int(rng.integers(len(images)))]
        cv2.GaussianBlur(cv2.resize(other, (size, size)), (0, 0), size / 32, dst=canvas)
    boxes = []
    for i, cell in zip(picks, split_cells(rng, n, size), strict=True):
        m = place(rng, images.boxes[i], cell, size, aug)
        x, y, w, h = cell
        roi = canvas[y:y + h, x:x + w]
        local = m.copy()
        local[:, 2] -= (x, y)
        cv2.warpAffine(images.images[i], local, (w, h), dst=roi, flags=cv2.INTER_AREA if m[0, 0] < 1 else
                       cv2.INTER_LINEAR, borderMode=cv2.BORDER_TRANSPARENT)
        b = images.boxes[i]
        corners = g.transform_points(m, [[b[0], b[1]], [b[0] + b[2] - 1, b[1] + b[3] - 1]])
        lo = np.maximum(corners[0], (x, y))
        hi = np.minimum(corners[1], (x + w - 1, y + h - 1))
        boxes.append([lo[0], lo[1], max(hi[0] - lo[0] + 1, 1.0), max(hi[1] - lo[1] + 1, 1.0)])
    return canvas, np.array(boxes, dtype=np.float64)


def photometric(rng: np.random.Generator, image: U8, aug: DetectAugment) -> U8:
    """Colour gain per channel, brightness, sometimes greyscale or blur."""
    out: npt.NDArray[np.integer[Any] | np.floating[Any]] = image
    if aug.color:
        gain = rng.uniform(1 - aug.color, 1 + aug.color, 3) * rng.uniform(1 - aug.color, 1 + aug.color)
        out = np.clip(out.astype(np.float32) * gain.astype(np.float32), 0, 255).astype(np.uint8)
    if rng.random() < aug.gray_prob:
        out = cv2.cvtColor(cv2.cvtColor(out, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    if rng.random() < aug.blur_prob:
        out = cv2.GaussianBlur(out, (0, 0), float(rng.uniform(0.5, 1.5)))
    return np.asarray(out, dtype=np.uint8)


def centernet_targets(boxes: F64, size: int, stride: int) -> tuple[F32, F32]:
    """(M, 4) boxes in input pixels -> target (5, H, W): centre heatmap, log w, log h (heatmap pixels),
    offset x, y; and weights (2, H, W): the offset's (1 at each centre) and the size's (dense, as in TTFNet:
    every pixel of a person's Gaussian down to `SIZE_REGION`, weighted by it and summing to 1 per person; where
    people overlap the smaller one's). Dense sizes give the size head many samples per person, not one."""
    hs = size // stride
    target = np.zeros((5, hs, hs), np.float32)
    weight = np.zeros((2, hs, hs), np.float32)
    to_heat = g.invert(g.heatmap_to_input(stride))
    ax = np.arange(hs, dtype=np.float32)
    for x, y, w, h in boxes[np.argsort(-boxes[:, 2] * boxes[:, 3])]:  # the larger first: the smaller overwrite
        c = g.transform_points(to_heat, [[x + (w - 1) / 2, y + (h - 1) / 2]])[0]
        p = np.clip(np.round(c), 0, hs - 1).astype(int)
        sx = max(GAUSSIAN_ALPHA * w / stride / 6, 0.4)
        sy = max(GAUSSIAN_ALPHA * h / stride / 6, 0.4)
        gauss = np.exp(-((ax[None, :] - p[0]) ** 2) / (2 * sx**2) - ((ax[:, None] - p[1]) ** 2) / (2 * sy**2))
        np.maximum(target[0], gauss, out=target[0])
        region = gauss >= SIZE_REGION
        target[1][region], target[2][region] = np.log(w / stride), np.log(h / stride)
        weight[1][region] = gauss[region] / gauss[region].sum()
        target[3:, p[1], p[0]] = (c[0] - p[0], c[1] - p[1])
        weight[0, p[1], p[0]] = 1.0
    return target, weight


class DetectSamples(torch.utils.data.Dataset[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]):
    """(input (3, S, S), target (5, S/4, S/4), box weights (2, S/4, S/4)) keyed by (epoch, index), like
    `PoseSamples`."""

    def __init__(self, images: FrameImages, size: int, norm: Normalization, aug: DetectAugment, seed: int = 0,
                 stride: int = 4) -> None:
        self.images, self.size, self.norm, self.aug, self.seed, self.stride = images, size, norm, aug, seed, stride

    def __len__(self) -> int:
        return len(self.images)

    def sample(self, epoch: int, i: int) -> tuple[U8, F64]:
        """The augmented canvas (BGR) and its boxes, before normalisation (for tests and pictures)."""
        rng = np.random.default_rng((self.seed, epoch, i))
        canvas, boxes = compose_frame(rng, self.images, i, self.size, self.aug)
        if rng.random() < self.aug.flip_prob:
            canvas = np.ascontiguousarray(canvas[:, ::-1])
            boxes = boxes.copy()
            boxes[:, 0] = self.size - boxes[:, 0] - boxes[:, 2]
        return photometric(rng, canvas, self.aug), boxes

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        canvas, boxes = self.sample(*key)
        target, weight = centernet_targets(boxes, self.size, self.stride)
        x = self.norm.apply(canvas[None])[0]
        return torch.from_numpy(x), torch.from_numpy(target), torch.from_numpy(weight)


def centernet_loss(outputs: list[torch.Tensor], target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """CenterNet's loss summed over stacks: penalty-reduced focal loss on the centre heatmap (alpha 2, beta 4),
    L1 on log size (over each person's core, `centernet_targets`) and on the offset at the centres, each
    normalised by the number of people."""
    gt, size, offset = target[:, :1], target[:, 1:3], target[:, 3:]
    pos = (gt >= 1.0 - 1e-6).float()
    n = pos.sum().clamp(min=1.0)
    at_centre, over_core = weight[:, :1], weight[:, 1:]
    total = torch.zeros((), device=target.device)
    for o in outputs:
        o = o.float()
        p = torch.sigmoid(o[:, :1]).clamp(1e-4, 1 - 1e-4)
        focal = -(pos * torch.log(p) * (1 - p) ** 2 + (1 - pos) * torch.log(1 - p) * p**2 * (1 - gt) ** 4).sum() / n
        l1 = (((o[:, 1:3] - size).abs() * over_core).sum() + ((o[:, 3:] - offset).abs() * at_centre).sum()) / n
        total = total + focal + l1
    return total
