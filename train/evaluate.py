"""Honest evaluation: PCK@0.2 (torso) for LSP, PCKh@0.5 (head) for MPII, optional flip test.

LSP protocol: the person crop is the square centred on the box of the labelled joints inside the
image, side 1.25 x the box's longer side (what the datasets module computes); only joints labelled
visible are scored; images whose torso pair (left shoulder, right hip) is unlabelled are skipped.
Torso size = |left shoulder - right hip|. PCKh: head size = 0.6 x head-box diagonal, as in the
MPII tools (the hourglass annotation files store it as `normalize`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from streampose.api import PoseEstimator, infer_heatmaps
from streampose.backends import Backend
from streampose.crop import CropPolicy
from streampose.decode import decode
from streampose.geometry import PIXELS_PER_SCALE, crop_transform
from streampose.joints import LIMBS12, JointSet
from streampose.people import find
from streampose.preprocess import preprocess
from streampose.sources import read_image
from train.datasets import Annotation, Dataset

F32 = npt.NDArray[np.float32]


def jittered(items: list[Annotation], jitter: float, seed: int = 0) -> tuple[npt.NDArray[np.float64], F32]:
    """Centres (N, 2) and scales (N,) of the annotations' crops moved as a detector or tracker misses them: the
    centre by up to `jitter` of the crop's side per axis, the side by a factor within [1/(1+2j), 1+2j]
    (log-uniform), drawn from `seed`."""
    rng = np.random.default_rng(seed)
    centers = np.array([a.center for a in items], np.float64)
    scales = np.array([a.scale for a in items], np.float64)
    if jitter:
        side = scales * 200.0
        centers += rng.uniform(-jitter, jitter, centers.shape) * side[:, None]
        scales *= np.exp(rng.uniform(-1, 1, len(items)) * np.log1p(2 * jitter))
    return centers, scales.astype(np.float32)


def shrink_factor(scale: float, side: int) -> float:
    """How much to shrink an image so that the person crop of `scale` is `side` pixels wide (`shrunk`; the peers'
    runners get this factor, tools/peers)."""
    return side / (PIXELS_PER_SCALE * scale)


def shrunk(image: npt.NDArray[np.uint8], scale: float, side: int) -> npt.NDArray[np.uint8]:
    """The image as a camera sees the person far away: shrunk (area-averaged) so that the person crop of `scale`
    is `side` pixels wide, and enlarged back (bilinear) so that coordinates stay. Never enlarges."""
    k = shrink_factor(scale, side)
    if k >= 1:
        return image
    h, w = image.shape[:2]
    small = cv2.resize(image, (max(1, round(w * k)), max(1, round(h * k))), interpolation=cv2.INTER_AREA)
    return np.asarray(cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR), np.uint8)


def predict(backend: Backend, dataset: Dataset, flip: bool = False, batch: int = 32, progress: bool = True,
            jitter: float = 0.0, small: int = 0) -> F32:
    """Keypoints (N, K, 3) in image pixels for every annotation's person crop (moved by `jitter`, see
    `jittered`; with `small`, each person seen with a crop of that many pixels, see `shrunk`)."""
    info = backend.info
    batch = min(batch, info.max_batch)
    centers, scales = jittered(dataset.items, jitter)
    out = []
    for start, chunk in tqdm([(i, dataset.items[i:i + batch]) for i in range(0, len(dataset.items), batch)],
                             desc="evaluating", unit="batch", disable=None if progress else True, leave=False):
        frames = [read_image(a.image) for a in chunk]
        if small:
            frames = [shrunk(f, a.scale, small) for f, a in zip(frames, chunk, strict=True)]
        m = crop_transform(centers[start:start + len(chunk)], scales[start:start + len(chunk)], info.input_size)
        x = preprocess(frames, m, info.input_size, info.normalization)
        out.append(decode(infer_heatmaps(backend, x, flip), m, stride=info.stride))
    return np.concatenate(out) if out else np.zeros((0, len(info.joints), 3), np.float32)


def pck(pred: npt.ArrayLike, gt: npt.ArrayLike, scored: npt.ArrayLike, ref: npt.ArrayLike, threshold: float
        ) -> tuple[F32, npt.NDArray[np.int64]]:
    """Per-joint share of scored joints within `threshold * ref` of the truth, and the counts.

    pred, gt: (N, K, >=2); scored: (N, K) bool; ref: (N,) reference lengths (torso, head size).
    """
    p, t = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
    s = np.asarray(scored, bool)
    dist = np.linalg.norm(p[..., :2] - t[..., :2], axis=-1)
    hit = (dist <= threshold * np.asarray(ref, np.float64)[:, None]) & s
    counts = s.sum(axis=0)
    rate = np.where(counts > 0, hit.sum(axis=0) / np.maximum(counts, 1), np.nan)
    return rate.astype(np.float32), counts.astype(np.int64)


@dataclass
class Report:
    metric: str
    joints: JointSet
    per_joint: dict[str, float]
    counts: dict[str, int]
    limbs: float
    all: float
    images: int
    skipped: int
    flip: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "joints": self.joints.name, "per_joint": self.per_joint,
                "counts": self.counts, "limbs": self.limbs, "all": self.all, "images": self.images,
                "skipped": self.skipped, "flip": self.flip, **self.extra}

    def table(self) -> str:
        flip = "on" if self.flip else "off"
        lines = [f"{self.metric}  ({self.images} images, {self.skipped} skipped, flip test {flip})",
                 f"  {'joint':<12}{'score':>8}{'n':>7}"]
        for name in self.joints.names:
            lines.append(f"  {name:<12}{100 * self.per_joint[name]:8.1f}{self.counts[name]:7d}")
        lines.append(f"  {'limbs (12)':<12}{100 * self.limbs:8.1f}")
        lines.append(f"  {'all':<12}{100 * self.all:8.1f}")
        if "mirrored_better" in self.extra:
            lines.append(f"  fits its labels mirrored left/right clearly better in {self.extra['mirrored_better']} "
                         f"of {self.extra['mirror_checked']} images")
        return "\n".join(lines)


def _report(metric: str, joints: JointSet, rate: F32, counts: npt.NDArray[np.int64], images: int, skipped: int,
            flip: bool) -> Report:
    per = {n: float(rate[i]) for i, n in enumerate(joints.names)}
    cnt = {n: int(counts[i]) for i, n in enumerate(joints.names)}
    limb_idx = [joints.index(n) for n in LIMBS12]
    # means weight joints equally (the usual table convention), over joints that were scored at all
    limbs = float(np.nanmean(rate[limb_idx]))
    return Report(metric, joints, per, cnt, limbs, float(np.nanmean(rate)), images, skipped, flip)


def lsp_pck(pred: npt.ArrayLike, dataset: Dataset, threshold: float = 0.2, flip: bool = False) -> Report:
    """PCK@threshold with the torso diameter |l_shoulder - r_hip|, LSP protocol."""
    js = dataset.joints
    gt = np.stack([a.joints for a in dataset.items])
    ls, rh = js.index("l_shoulder"), js.index("r_hip")
    keep = (gt[:, ls, 2] > 0) & (gt[:, rh, 2] > 0)
    torso = np.linalg.norm(gt[:, ls, :2] - gt[:, rh, :2], axis=-1)
    p = np.asarray(pred)[keep]
    rate, counts = pck(p, gt[keep], gt[keep, :, 2] > 0, torso[keep], threshold)
    return _report(f"PCK@{threshold:g} (torso)", js, rate, counts, int(keep.sum()), int((~keep).sum()), flip)


def paired_bootstrap(pred_a: npt.ArrayLike, pred_b: npt.ArrayLike, dataset: Dataset, rounds: int = 2000,
                     seed: int = 0) -> tuple[float, float, float]:
    """B's PCK@0.2 limbs (LSP protocol) minus A's on the same images, and the 95 % interval of that difference
    over `rounds` resamplings of the images (both predictions on the same resample: paired, so that what the
    images have in common cancels). Two settings of the same model are told apart by more than chance where
    the interval leaves out 0."""
    js = dataset.joints
    gt = np.stack([a.joints for a in dataset.items]).astype(np.float64)
    ls, rh = js.index("l_shoulder"), js.index("r_hip")
    keep = (gt[:, ls, 2] > 0) & (gt[:, rh, 2] > 0)
    torso = np.linalg.norm(gt[keep, ls, :2] - gt[keep, rh, :2], axis=-1)
    limbs = [js.index(n) for n in LIMBS12]
    scored = (gt[keep][:, limbs, 2] > 0).astype(np.float64)

    def hits(pred: npt.ArrayLike) -> npt.NDArray[np.float64]:
        d = np.linalg.norm(np.asarray(pred, np.float64)[keep][:, limbs, :2] - gt[keep][:, limbs, :2], axis=-1)
        out: npt.NDArray[np.float64] = (d <= 0.2 * torso[:, None]) * scored  # NaN (no one found): a miss
        return out

    def diff(index: npt.NDArray[np.int64]) -> float:
        n = np.maximum(scored[index].sum(axis=0), 1)  # every limb joint is scored in some image of a split
        return float(np.mean(hb[index].sum(axis=0) / n) - np.mean(ha[index].sum(axis=0) / n))

    ha, hb = hits(pred_a), hits(pred_b)
    rng = np.random.default_rng(seed)
    every = np.arange(len(torso))
    samples = [diff(rng.integers(0, len(torso), len(torso))) for _ in range(rounds)]
    lo, hi = np.percentile(samples, [2.5, 97.5])
    return diff(every), float(lo), float(hi)


def predict_full_image(estimator: PoseEstimator, dataset: Dataset, progress: bool = True,
                       policy: CropPolicy | None = None) -> tuple[F32, int]:
    """Keypoints (N, K, 3) of the most confident person the runtime finds in each whole image, as
    `streampose run` finds them on images (`PoseEstimator.find`: the person detector, candidates and second
    looks; no labels used), or as `policy` finds them in a new scene (e.g. `TrackCrop`: a video's first frame),
    NaN where it finds no one; and the number of images where it found someone."""
    out = np.full((len(dataset), len(estimator.joints), 3), np.nan, np.float32)
    found = 0
    for i, a in enumerate(tqdm(dataset.items, desc="full images", unit="img", disable=None if progress else True,
                               leave=False)):
        image = read_image(a.image)
        if policy is not None:
            policy.reset()
        poses = estimator.find(image) if policy is None else find(estimator, policy, image)
        if poses:
            out[i] = poses[0].keypoints
            found += 1
    return out, found


def score_full_image(estimator: PoseEstimator, dataset: Dataset, progress: bool = True,
                     policy: CropPolicy | None = None) -> Report:
    """The dataset's metric on `predict_full_image`: an image where no one is found misses every joint. The
    report's `extra` says in how many images someone was found."""
    pred, found = predict_full_image(estimator, dataset, progress, policy)
    rep = _score(pred, dataset, estimator.flip)
    rep.extra["mirrored_better"], rep.extra["mirror_checked"] = mirrored_better(pred, dataset)
    rep.extra.update(protocol="full image", found=found, of=len(dataset))
    return rep


def _score(pred: F32, dataset: Dataset, flip: bool) -> Report:
    heads = [a.head_size for a in dataset.items]
    if heads and all(h is not None for h in heads):
        return pckh(pred, dataset, [float(h or 0) for h in heads], flip=flip)
    return lsp_pck(pred, dataset, flip=flip)


def side_by_side(reports: dict[str, Report]) -> str:
    """Per-joint tables of several reports of one dataset (e.g. crop given and full image) as columns."""
    first = next(iter(reports.values()))
    cols = list(reports)
    width = max(12, *(len(c) + 2 for c in cols))
    lines = [f"{first.metric}  ({first.images} images, {first.skipped} skipped, flip test "
             f"{'on' if first.flip else 'off'})", f"  {'joint':<12}" + "".join(f"{c:>{width}}" for c in cols)]
    for name in first.joints.names:
        lines.append(f"  {name:<12}" + "".join(f"{100 * r.per_joint[name]:{width}.1f}" for r in reports.values()))
    lines.append(f"  {'limbs (12)':<12}" + "".join(f"{100 * r.limbs:{width}.1f}" for r in reports.values()))
    lines.append(f"  {'all':<12}" + "".join(f"{100 * r.all:{width}.1f}" for r in reports.values()))
    for c, r in reports.items():
        if "mirrored_better" in r.extra:
            lines.append(f"  {c}: fits its labels mirrored left/right clearly better in {r.extra['mirrored_better']} "
                         f"of {r.extra['mirror_checked']} images")
        if "found" in r.extra:
            lines.append(f"  {c}: a person found in {r.extra['found']} of {r.extra['of']} images")
    return "\n".join(lines)


def score(backend: Backend, dataset: Dataset, flip: bool = False, progress: bool = True, jitter: float = 0.0,
          small: int = 0) -> Report:
    """Predict and score a dataset with its own metric: PCKh@0.5 where every annotation carries a
    head size (MPII), else PCK@0.2 with the LSP protocol. The report's `extra` counts the images whose
    prediction fits their labels mirrored left/right clearly better (`mirrored_better`)."""
    pred = predict(backend, dataset, flip=flip, progress=progress, jitter=jitter, small=small)
    rep = _score(pred, dataset, flip)
    rep.extra["mirrored_better"], rep.extra["mirror_checked"] = mirrored_better(pred, dataset)
    if jitter:
        rep.extra["jitter"] = jitter
    if small:
        rep.extra["small"] = small
    return rep


def mirrored_better(pred: npt.ArrayLike, dataset: Dataset, margin: float = 0.25) -> tuple[int, int]:
    """How many images (of those with at least 4 labelled joints whose mirror partner is labelled too) the
    prediction fits clearly better with the labels' left and right exchanged: mean distance to the mirrored
    labels below (1 - margin) x the mean distance to the labels. A measure of side confusion, by the model
    or by the labels."""
    gt = np.stack([a.joints for a in dataset.items]).astype(np.float64)
    p = np.asarray(pred, np.float64)
    flip = list(dataset.joints.flip)
    both = (gt[..., 2] > 0) & (gt[:, flip, 2] > 0) & np.isfinite(p[..., 0])
    own = np.linalg.norm(p[..., :2] - gt[..., :2], axis=-1)
    mirrored = np.linalg.norm(p[..., :2] - gt[:, flip, :2], axis=-1)
    n = both.sum(axis=1)
    checked = n >= 4
    with np.errstate(invalid="ignore", divide="ignore"):
        a = np.where(both, own, 0).sum(axis=1) / n
        b = np.where(both, mirrored, 0).sum(axis=1) / n
    return int(((b < (1 - margin) * a) & checked).sum()), int(checked.sum())


def pckh(pred: npt.ArrayLike, dataset: Dataset, head_sizes: npt.ArrayLike, threshold: float = 0.5,
         flip: bool = False) -> Report:
    """PCKh@threshold: head size = 0.6 x head-box diagonal, given per annotation."""
    gt = np.stack([a.joints for a in dataset.items])
    rate, counts = pck(pred, gt, gt[..., 2] > 0, head_sizes, threshold)
    return _report(f"PCKh@{threshold:g}", dataset.joints, rate, counts, len(gt), 0, flip)
