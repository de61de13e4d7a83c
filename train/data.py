"""Training samples: a decode-once crop cache, augmentation and heatmap targets.

Decoding JPEGs and warping whole images for every sample would starve the model on 2 cores, so
each person is decoded and cropped once, with context for augmentation, into a uint8 memory-mapped
cache (`CropCache`); a sample is then one small warp of a cached crop.

Augmentation (the hourglass paper's recipe, as in its public reimplementations):
- scale x clip(N(1, 0.25), 0.75, 1.25)
- rotation clip(N(0, 30), -30, 30) degrees, applied with probability 0.6
- horizontal flip with probability 0.5, swapping left and right joints
- colour: each channel multiplied by U(0.8, 1.2)
Targets: unit-height Gaussians (sigma = 1 heatmap pixel) at sub-pixel joint positions; joints that
are not labelled get weight 0 in the loss instead of being trained towards an empty map.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from tqdm import tqdm

from streampose import geometry as g
from streampose.joints import flip_keypoints
from streampose.preprocess import Normalization
from streampose.sources import read_image
from train.datasets import Annotation, Dataset

F32 = npt.NDArray[np.float32]

CONTEXT = 1.75
"""Cached crops cover 1.75x the person crop: enough for scale 1.25 rotated by 30 degrees."""


@dataclass(frozen=True)
class Augment:
    scale: float = 0.25
    rotation: float = 30.0
    rotation_prob: float = 0.6
    flip_prob: float = 0.5
    color: float = 0.2

    @classmethod
    def none(cls) -> Augment:
        return cls(scale=0.0, rotation=0.0, rotation_prob=0.0, flip_prob=0.0, color=0.0)


class CropCache:
    """Person crops with context, (N, S, S, 3) uint8 with S = CONTEXT * input size, on disk.

    The crop's person is centred with scale input_size / 200, so a crop at the nominal scale is
    exactly `input_size` pixels wide. Joints are stored in crop pixels.
    """

    VERSION = 1

    def __init__(self, dataset: Dataset, input_size: int, cache_dir: str | os.PathLike[str]) -> None:
        self.input_size = input_size
        self.side = round(CONTEXT * input_size)
        self.joints_set = dataset.joints
        key = hashlib.sha256(
            json.dumps([self.VERSION, dataset.name, input_size, CONTEXT, len(dataset)]).encode()
        ).hexdigest()[:16]
        base = Path(cache_dir) / f"crops-{key}"
        images, joints = base.with_suffix(".u8"), base.with_suffix(".joints.npy")
        shape = (len(dataset), self.side, self.side, 3)
        if not (images.is_file() and joints.is_file() and images.stat().st_size == int(np.prod(shape))):
            self._build(dataset, images, joints, shape)
        self.images = np.memmap(images, dtype=np.uint8, mode="r", shape=shape)
        self.joints: F32 = np.load(joints)

    def _build(self, dataset: Dataset, images: Path, joints: Path, shape: tuple[int, ...]) -> None:
        images.parent.mkdir(parents=True, exist_ok=True)
        tmp = images.with_suffix(".tmp")
        out = np.memmap(tmp, dtype=np.uint8, mode="w+", shape=shape)
        all_joints = np.zeros((len(dataset), len(dataset.joints), 3), np.float32)
        def crop(a: Annotation) -> tuple[npt.NDArray[np.uint8], F32]:
            m = g.crop_transform(a.center, a.scale * CONTEXT, self.side)
            return g.warp_image(read_image(a.image), m, self.side), g.transform_points(m, a.joints).astype(np.float32)

        with ThreadPoolExecutor(os.cpu_count()) as pool:  # OpenCV decodes and warps without the GIL
            done = pool.map(crop, dataset.items)
            for i, (image, points) in enumerate(tqdm(done, total=len(dataset), desc="caching crops", unit="img",
                                                     disable=None)):
                out[i], all_joints[i] = image, points
        out.flush()
        del out
        np.save(joints, all_joints)
        os.replace(tmp, images)

    def __len__(self) -> int:
        return len(self.images)


def gaussian_targets(points: F32, size: int, sigma: float = 1.0) -> F32:
    """(K, 2) points in heatmap pixels -> (K, size, size) unit-height Gaussians."""
    ax = np.arange(size, dtype=np.float32)
    gx = np.exp(-((ax[None, :] - points[:, 0:1]) ** 2) / (2 * sigma**2))
    gy = np.exp(-((ax[None, :] - points[:, 1:2]) ** 2) / (2 * sigma**2))
    out: F32 = (gy[:, :, None] * gx[:, None, :]).astype(np.float32)
    return out


def sample_transform(rng: np.random.Generator, cache: CropCache, aug: Augment) -> tuple[npt.NDArray[np.float64], bool]:
    """A random cache->input transform and whether to flip."""
    s = float(np.clip(rng.normal(1.0, aug.scale), 1 - aug.scale, 1 + aug.scale)) if aug.scale else 1.0
    r = 0.0
    if aug.rotation and rng.random() < aug.rotation_prob:
        r = float(np.clip(rng.normal(0.0, aug.rotation), -aug.rotation, aug.rotation))
    c = (cache.side - 1) / 2.0
    m = g.crop_transform((c, c), s * cache.input_size / g.PIXELS_PER_SCALE, cache.input_size, r)
    return m, bool(rng.random() < aug.flip_prob)


class PoseSamples(torch.utils.data.Dataset[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]):
    """(input (3, S, S), target heatmaps (K, S/4, S/4), joint weights (K,)) for training.

    Items are keyed by (epoch, index) and their randomness comes from (seed, epoch, index), so a
    sample is the same whichever worker or resumed run draws it: resuming is exact.
    """

    def __init__(
        self, cache: CropCache, norm: Normalization, aug: Augment, seed: int = 0, stride: int = 4, sigma: float = 1.0
    ) -> None:
        self.cache, self.norm, self.aug, self.seed = cache, norm, aug, seed
        self.stride, self.sigma = stride, sigma
        self.input_to_heat = g.invert(g.heatmap_to_input(stride))

    def __len__(self) -> int:
        return len(self.cache)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        epoch, i = key
        rng = np.random.default_rng((self.seed, epoch, i))
        m, flip = sample_transform(rng, self.cache, self.aug)
        size = self.cache.input_size
        crop = g.warp_image(np.asarray(self.cache.images[i], dtype=np.uint8), m, size)
        joints = g.transform_points(m, self.cache.joints[i]).astype(np.float32)
        if flip:
            crop = np.ascontiguousarray(crop[:, ::-1])
            joints = flip_keypoints(joints, self.cache.joints_set, size)
        if self.aug.color:
            gain = rng.uniform(1 - self.aug.color, 1 + self.aug.color, 3).astype(np.float32)
            crop = np.clip(crop.astype(np.float32) * gain, 0, 255).astype(np.uint8)
        x = self.norm.apply(crop[None])[0]
        heat_xy = g.transform_points(self.input_to_heat, joints[:, :2]).astype(np.float32)
        target = gaussian_targets(heat_xy, size // self.stride, self.sigma)
        weight = (joints[:, 2] > 0).astype(np.float32)
        return torch.from_numpy(x), torch.from_numpy(target), torch.from_numpy(weight)

