"""Training samples: a decode-once crop cache, and batches augmented on the model's device.

Decoding JPEGs and warping whole images for every sample would starve the model, so each person is decoded and
cropped once, with context for augmentation, into uint8 crops in memory: a memory-mapped `CropCache` made from
a dataset, or a pack (`train/pack.py`) made once for a GPU machine. A batch is then one `grid_sample` of the
cached crops on the device that trains: on a GPU, augmentation costs nothing beside the model and needs no
loader processes; on the CPU it costs less than a per-sample OpenCV warp.

Augmentation (`Augment`): the hourglass paper's rotation (clip(N(0, 30), -30, 30) degrees, p 0.6), horizontal
flip (p 0.5, left and right joints swapped) and per-channel colour gain U(0.8, 1.2), with crops like the
runtime's: the runtime crops around a detector's box or the last pose, not around labels, so the crop's scale
is log-uniform in [0.7, 1.4] (the paper: [0.75, 1.25]) and its centre moves by up to 15 % of its side per axis.
The `small` recipe also shows a sixth of the samples at a lower resolution (32-128 px, enlarged back), as the
runtime sees a person far from the camera.
Targets: unit-height Gaussians (sigma = 1 heatmap pixel) at sub-pixel joint positions; joints that are not
labelled get weight 0 in the loss instead of being trained towards an empty map.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from tqdm import tqdm

from streampose import geometry as g
from streampose.joints import JointSet
from streampose.preprocess import Normalization
from streampose.sources import read_image
from train.datasets import Annotation, Dataset

F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]

CONTEXT = 1.75
"""Cached crops cover 1.75x the person crop: enough for scale 1.25 rotated by 30 degrees."""


@dataclass(frozen=True)
class Augment:
    scale: tuple[float, float] = (0.7, 1.4)
    """The crop's side relative to the LSP protocol's (log-uniform; above 1 zooms out)."""
    shift: float = 0.15
    """The crop's centre moves by up to this share of its side, per axis (uniform)."""
    rotation: float = 30.0
    rotation_prob: float = 0.6
    flip_prob: float = 0.5
    color: float = 0.2
    low_res: float = 0.0
    """The share of samples seen at a lower resolution: the crop shrunk to a side drawn log-uniformly from
    `low_res_side` (input pixels) and enlarged back, as the runtime enlarges a person far from the camera."""
    low_res_side: tuple[float, float] = (32.0, 128.0)

    @classmethod
    def small(cls) -> Augment:
        """The runtime's crops, and a sixth of the samples at 32-128 px (`low_res`): a third bought as much for
        small people and cost more on whole images (README, small people)."""
        return cls(low_res=1 / 6)

    @classmethod
    def paper(cls) -> Augment:
        """The hourglass paper's recipe: crops centred on the labels, scale within 0.75-1.25."""
        return cls(scale=(0.75, 1.25), shift=0.0)

    @classmethod
    def none(cls) -> Augment:
        return cls(scale=(1.0, 1.0), shift=0.0, rotation=0.0, rotation_prob=0.0, flip_prob=0.0, color=0.0)


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
        def crop(a: Annotation) -> tuple[U8, F32]:
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


def gaussian_targets(points: torch.Tensor, size: int, sigma: float = 1.0) -> torch.Tensor:
    """(..., K, 2) points in heatmap pixels -> (..., K, size, size) unit-height Gaussians."""
    ax = torch.arange(size, dtype=torch.float32, device=points.device)
    gx = torch.exp(-((ax - points[..., 0:1]) ** 2) / (2 * sigma**2))
    gy = torch.exp(-((ax - points[..., 1:2]) ** 2) / (2 * sigma**2))
    return gy[..., :, None] * gx[..., None, :]


def crop_params(rng: np.random.Generator, aug: Augment
                ) -> tuple[float, float, float, float, bool, F32, float]:
    """One sample's scale, rotation (degrees), centre shift (x, y, share of the crop side), flip, colour gains and
    the side it is seen at (0: full resolution)."""
    lo, hi = aug.scale
    s = float(np.exp(rng.uniform(np.log(lo), np.log(hi)))) if hi > lo else lo
    r = 0.0
    if aug.rotation and rng.random() < aug.rotation_prob:
        r = float(np.clip(rng.normal(0.0, aug.rotation), -aug.rotation, aug.rotation))
    dx, dy = rng.uniform(-aug.shift, aug.shift, 2) if aug.shift else (0.0, 0.0)
    flip = bool(rng.random() < aug.flip_prob)
    gain = rng.uniform(1 - aug.color, 1 + aug.color, 3).astype(np.float32) if aug.color else np.ones(3, np.float32)
    side = 0.0
    if aug.low_res and rng.random() < aug.low_res:  # drawn last: recipes without it keep their samples
        side = float(np.exp(rng.uniform(*np.log(aug.low_res_side))))
    return s, r, float(dx), float(dy), flip, gain, side


def low_resolution(x: torch.Tensor, side: int) -> torch.Tensor:
    """(C, S, S) -> the same shrunk to `side` pixels (area-averaged) and enlarged back (bilinear)."""
    if side >= x.shape[-1]:
        return x
    small = F.interpolate(x[None], size=(side, side), mode="area")
    return F.interpolate(small, size=x.shape[-2:], mode="bilinear", align_corners=False)[0]


class PoseBatches:
    """Training batches (input (B, 3, S, S), target heatmaps (B, K, S/4, S/4), joint weights (B, K)) made on
    `device` from person crops with context: `images` (N, side, side, 3) BGR, `joints` (N, K, 3) in their pixels
    (NaN or visibility 0: not labelled), the LSP protocol's person crop `crop` pixels wide at their centre.

    Samples are keyed by (epoch, index) and their randomness comes from (seed, epoch, index), so a sample is the
    same whichever run draws it: resuming is exact.
    """

    def __init__(self, images: U8, joints: F32, joint_set: JointSet, crop: float, input_size: int,
                 norm: Normalization, aug: Augment, seed: int = 0, stride: int = 4, sigma: float = 1.0,
                 device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.aug, self.seed, self.stride, self.sigma = aug, seed, stride, sigma
        self.input_size, self.crop, self.side = input_size, float(crop), int(images.shape[1])
        # on a GPU every crop lives on the device (a pack's 9,400 take 0.9 GB); on the CPU they stay mapped
        self.images: U8 | torch.Tensor = (torch.from_numpy(np.ascontiguousarray(images)).to(self.device)
                                          if self.device.type != "cpu" else images)
        j = np.asarray(joints, np.float32)
        labelled = np.isfinite(j[..., :2]).all(-1) & (j[..., 2] > 0)
        self.xy = torch.from_numpy(np.where(labelled[..., None], j[..., :2], 0).astype(np.float32)).to(self.device)
        self.labelled = torch.from_numpy(labelled.astype(np.float32)).to(self.device)
        self.flip_perm = torch.tensor(joint_set.flip, device=self.device)
        bgr_to_net = [2, 1, 0] if norm.rgb else [0, 1, 2]
        self.channels = torch.tensor(bgr_to_net, device=self.device)
        self.mean = torch.tensor(norm.mean, device=self.device).view(1, 3, 1, 1) * 255
        self.std = torch.tensor(norm.std, device=self.device).view(1, 3, 1, 1) * 255

    def __len__(self) -> int:
        return len(self.xy)

    def pixels(self, index: torch.Tensor) -> torch.Tensor:
        """(B, 3, side, side) float crops in the network's channel order."""
        if isinstance(self.images, torch.Tensor):
            u8 = self.images[index]
        else:
            u8 = torch.from_numpy(np.asarray(self.images[index.numpy()]))
        return u8.to(self.device).permute(0, 3, 1, 2)[:, self.channels].float()

    def __call__(self, keys: Sequence[tuple[int, int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[int]]:
        """The batch of these (epoch, index) keys, and the indices.

        The per-sample numbers (transforms, their inverses, colour gains, flips, indices) are made on the host
        and reach the device in one pinned, asynchronous copy: a blocking copy, or an inverse computed on the
        GPU, would wait for the previous step to finish on every batch."""
        params = [crop_params(np.random.default_rng((self.seed, e, i)), self.aug) for e, i in keys]
        index = [i for _, i in keys]
        b, size = len(keys), self.input_size
        s, r, dx, dy = (np.array([p[k] for p in params], np.float64) for k in range(4))
        flip = np.array([p[4] for p in params])
        # output u in [-1, 1]^2 -> source v = A u + t (normalised coordinates, align_corners=False)
        k = s * self.crop / self.side
        rad = np.deg2rad(r)
        cos, sin = np.cos(rad) * k, np.sin(rad) * k
        a = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], -2)  # (B, 2, 2)
        a[:, :, 0] *= np.where(flip, -1.0, 1.0)[:, None]
        t = np.stack([dx, dy], -1) * s[:, None] * self.crop * 2 / self.side
        host = torch.from_numpy(np.concatenate(
            [a.reshape(b, 4), t, np.linalg.inv(a).reshape(b, 4), np.stack([p[5] for p in params]), flip[:, None],
             np.array(index)[:, None]], 1).astype(np.float32))
        dev = host.pin_memory().to(self.device, non_blocking=True) if self.device.type == "cuda" else host
        theta = torch.cat([dev[:, :4].view(b, 2, 2), dev[:, 4:6, None]], -1)
        inv, gain = dev[:, 6:10].view(b, 2, 2), dev[:, 10:13]
        flipped, idx = dev[:, 13] > 0.5, dev[:, 14].long()
        grid = F.affine_grid(theta, [b, 3, size, size], align_corners=False)
        x = F.grid_sample(self.pixels(idx), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        for j, p in enumerate(params):
            if p[6]:
                x[j] = low_resolution(x[j], round(p[6]))
        x = ((x * gain[:, :, None, None]).clamp_(0, 255) - self.mean) / self.std
        # joints: source pixels -> v -> u = A^-1 (v - t) -> input pixels -> heatmap pixels
        v = (self.xy[idx] - (self.side - 1) / 2) * (2 / self.side)
        u = torch.einsum("bij,bkj->bki", inv, v - theta[:, None, :, 2])
        heat = ((u * (size / 2) + (size - 1) / 2) - (self.stride - 1) / 2) / self.stride
        weight = self.labelled[idx]
        heat = torch.where(flipped[:, None, None], heat[:, self.flip_perm], heat)
        weight = torch.where(flipped[:, None], weight[:, self.flip_perm], weight)
        target = gaussian_targets(heat, size // self.stride, self.sigma)
        return x, target, weight, index

    def sample(self, epoch: int, i: int) -> tuple[U8, F32]:
        """One augmented crop (BGR uint8) and its joints in input pixels (NaN: unlabelled), for tests and pictures."""
        x, target, weight, _ = self([(epoch, i)])
        mean, std = self.mean, self.std
        rgb = (x * std + mean).clamp(0, 255)[0][self.channels].permute(1, 2, 0).round().byte().cpu().numpy()
        hs = self.input_size // self.stride
        flat = target[0].reshape(len(target[0]), -1).argmax(-1).cpu().numpy()
        xy = np.stack([flat % hs, flat // hs], -1).astype(np.float32) * self.stride + (self.stride - 1) / 2
        xy[weight[0].cpu().numpy() == 0] = np.nan
        return np.ascontiguousarray(rgb), xy
