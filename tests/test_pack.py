"""Packed crops and batches made on the training device: geometry, label mirroring, pack -> train -> eval."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from streampose.joints import LSP14
from streampose.preprocess import Normalization
from train.data import Augment, PoseBatches, crop_params, gaussian_targets
from train.datasets import DatasetError, load_lsp
from train.detect_data import FrameImages
from train.losses import choose_mirrored
from train.pack import load_pack, write_pack

ROOT = Path(__file__).resolve().parents[1]


def dots(n: int = 6, side: int = 176, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Crops that are black but for a bright 3x3 square on each of 14 joints (NaN: one unlabelled)."""
    rng = np.random.default_rng(seed)
    images = np.zeros((n, side, side, 3), np.uint8)
    joints = np.zeros((n, 14, 3), np.float32)
    joints[..., :2] = rng.uniform(side * 0.3, side * 0.7, (n, 14, 2))
    joints[..., 2] = 1
    joints[:, 13] = np.nan
    for i in range(n):
        for x, y in np.round(joints[i, :13, :2]).astype(int):
            images[i, y - 1:y + 2, x - 1:x + 2] = 255
        joints[i, :13, :2] = np.round(joints[i, :13, :2])
    return images, joints


def test_targets_sit_on_the_joints_without_augmentation() -> None:
    images, joints = dots()
    b = PoseBatches(images, joints, LSP14, 128.0, 128, Normalization(), Augment.none())
    x, target, weight, index = b([(0, 2)])
    assert x.shape == (1, 3, 128, 128) and target.shape == (1, 14, 32, 32) and index == [2]
    assert weight[0, 13] == 0 and weight[0, :13].all()
    centre = (176 - 1) / 2
    want = ((joints[2, :13, :2] - centre + 63.5) - 1.5) / 4  # crop = input: one source pixel per input pixel
    flat = target[0, :13].reshape(13, -1).argmax(-1).numpy()
    got = np.stack([flat % 32, flat // 32], -1)
    assert np.abs(got - want).max() <= 0.5


def test_a_jittered_crop_keeps_its_targets_on_its_image() -> None:
    """Scale, rotation, centre shift and flip move the image and the joints together: every target peak lands
    on the bright dot of its joint in the augmented crop."""
    images, joints = dots(8)
    aug = Augment(color=0.0)
    b = PoseBatches(images, joints, LSP14, 110.0, 128, Normalization(), aug, seed=5)
    params = [crop_params(np.random.default_rng((5, 1, i)), aug) for i in range(8)]
    assert {p[4] for p in params} == {True, False} and any(p[1] for p in params)  # flips, rotations, both ways
    checked = 0
    for i in range(8):
        crop, xy = b.sample(1, i)
        gray = crop.max(-1)
        assert np.isnan(xy[13]).all()  # the unlabelled joint has no target, flipped or not
        for x, y in xy[:13]:
            if 4 <= x < 124 and 4 <= y < 124:
                assert gray[int(y) - 4:int(y) + 5, int(x) - 4:int(x) + 5].max() > 60, (i, x, y)
                checked += 1
    assert checked > 50


def test_a_low_resolution_sample_keeps_its_targets_and_loses_its_detail() -> None:
    """`Augment.low_res` blurs the crop as a small, far person looks, without moving it: the same sample's
    targets are those of the full-resolution recipe, its dots are smeared, and recipes without it draw the same
    samples as before it existed."""
    images, joints = dots(4)
    sharp_aug = Augment(color=0.0)
    low_aug = Augment(color=0.0, low_res=1.0, low_res_side=(32.0, 32.0))
    for seed in range(20):
        plain, small = crop_params(np.random.default_rng(seed), Augment()), crop_params(
            np.random.default_rng(seed), Augment.small())
        assert plain[:5] == small[:5] and np.array_equal(plain[5], small[5]) and plain[6] == 0.0
    assert {crop_params(np.random.default_rng(s), Augment.small())[6] > 0 for s in range(20)} == {True, False}
    sharp = PoseBatches(images, joints, LSP14, 110.0, 128, Normalization(), sharp_aug, seed=3)
    low = PoseBatches(images, joints, LSP14, 110.0, 128, Normalization(), low_aug, seed=3)
    for i in range(4):
        a, b = sharp([(0, i)]), low([(0, i)])
        assert torch.equal(a[1], b[1]) and torch.equal(a[2], b[2])  # targets and weights
        edges = [float((x[0][..., 1:] - x[0][..., :-1]).abs().sum()) for x in (a, b)]
        assert edges[1] < 0.8 * edges[0], edges  # the dots' edges are smeared
        assert abs(float(b[0].mean() - a[0].mean())) < 0.05  # light is kept


def test_a_flip_swaps_left_and_right() -> None:
    images, joints = dots(1)
    plain = PoseBatches(images, joints, LSP14, 128.0, 128, Normalization(), Augment.none())
    flipped = PoseBatches(images, joints, LSP14, 128.0, 128, Normalization(), Augment(
        scale=(1.0, 1.0), shift=0.0, rotation=0.0, flip_prob=1.0, color=0.0))
    _, a = plain.sample(0, 0)
    _, b = flipped.sample(0, 0)
    right, left = LSP14.index("r_wrist"), LSP14.index("l_wrist")
    assert b[left, 0] == pytest.approx(127 - a[right, 0], abs=4.0)
    assert b[left, 1] == pytest.approx(a[right, 1], abs=4.0)


def test_a_sample_fit_better_by_its_mirrored_labels_is_chosen_mirrored() -> None:
    flip = torch.tensor(LSP14.flip)
    pts = torch.rand(2, 14, 2) * 30
    target = gaussian_targets(pts, 32)
    weight = torch.ones(2, 14)
    heatmaps = torch.stack([target[0], target[1][flip]])  # sample 0 as labelled, sample 1 with sides exchanged
    chosen = choose_mirrored(heatmaps, target, weight, flip, margin=0.25)
    assert chosen.tolist() == [False, True]
    # a sample whose mirror fits only a little better keeps its labels
    near = 0.55 * target[1] + 0.45 * target[1][flip]
    assert not choose_mirrored(near[None], target[1:], weight[1:], flip, margin=0.25).item()


@pytest.fixture(scope="module")
def tiny_pack(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not (data / "lspet" / "joints.mat").is_file():
        pytest.skip(f"{data}/lspet missing from the shared data")
    out = tmp_path_factory.mktemp("pack") / "tiny.npz"
    train, val = load_lsp(data / "lspet", 1, 24), load_lsp(data / "lspet", 8501, 8508)
    write_pack([(train, "train"), (val, "val")], out, progress=False)
    return out


def test_a_pack_keeps_every_crop_and_its_joints(tiny_pack: Path, data: Path) -> None:
    pack = load_pack(tiny_pack, progress=False)
    assert len(pack.select("train")) == 24 and len(pack.select("val")) == 8
    assert pack.images.shape[1:] == (176, 176, 3) and pack.crop == pytest.approx(176 / 1.5)
    src = load_lsp(data / "lspet", 1, 24)
    i = 3
    a = src.items[i]
    j = pack.joints[i]
    has = np.isfinite(j[:, 0])
    assert has.sum() == ((a.joints[:, 0] > -1) & (a.joints[:, 1] > -1)).sum()
    # the person is centred: the labelled joints' box centre sits at the crop's centre
    lo, hi = j[has & (j[:, 2] > 0), :2].min(0), j[has & (j[:, 2] > 0), :2].max(0)
    assert np.allclose((lo + hi) / 2, 87.5, atol=1.5)
    assert pack.source(i).endswith(f"#{i + 1}")


def test_a_frames_pack_keeps_whole_images_for_the_detector(data: Path, tmp_path: Path) -> None:
    if not (data / "lspet" / "joints.mat").is_file():
        pytest.skip(f"{data}/lspet missing from the shared data")
    src = load_lsp(data / "lspet", 1, 6)
    path = write_pack([(src, "train"), (load_lsp(data / "lspet", 8501, 8503), "val")], tmp_path / "f.npz",
                      side=192, frames=True, progress=False)
    pack = load_pack(path, progress=False)
    assert pack.frames and len(pack.images) == 9
    for i, a in enumerate(src.items):
        full = cv2.imread(str(a.image))
        s = min(1.0, 192 / max(full.shape[:2]))
        assert max(pack.images[i].shape[:2]) <= 192 and abs(pack.images[i].shape[1] - full.shape[1] * s) <= 1
        has = np.isfinite(pack.joints[i, :, 0])
        assert np.allclose(pack.joints[i, has, :2], (a.joints[has, :2] + 0.5) * s - 0.5, atol=1e-3)
    frames = FrameImages.from_pack(pack, pack.select("train"))
    assert len(frames) == 6 and all(b[2] > 0 and b[3] > 0 for b in frames.boxes)
    with pytest.raises(ValueError, match="holds whole frames"):
        pack.crop  # noqa: B018 - a pose model cannot train on it


def test_a_damaged_or_foreign_pack_is_a_clear_error(tiny_pack: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no such pack"):
        load_pack(tmp_path / "missing.npz")
    other = tmp_path / "other.npz"
    np.savez(other, x=np.zeros(3))
    with pytest.raises(DatasetError, match="not a streampose pack"):
        load_pack(other)
    with np.load(tiny_pack) as z:
        parts = {k: z[k] for k in z.files}
    parts["data"] = parts["data"].copy()
    parts["data"][parts["offsets"][2]:parts["offsets"][3]] = 7
    broken = tmp_path / "broken.npz"
    np.savez(broken, **parts)
    with pytest.raises(DatasetError, match="damaged"):
        load_pack(broken, progress=False)


def test_pack_train_eval_end_to_end(data: Path, tmp_path: Path) -> None:
    """tools/pack_crops.py -> streampose train --data pack: (time budget, label mirroring) -> streampose eval."""
    if not (data / "lspet" / "joints.mat").is_file():
        pytest.skip(f"{data}/lspet missing from the shared data")
    pack = tmp_path / "p.npz"
    run = [sys.executable, str(ROOT / "tools" / "pack_crops.py"), "--train", f"lsp:{data}/lspet@1-16",
           "--val", f"lsp:{data}/lspet@8501-8508", "--out", str(pack)]
    subprocess.run(run, check=True, cwd=ROOT, capture_output=True)
    sp = [sys.executable, "-m", "streampose"]
    out = tmp_path / "run"
    r = subprocess.run([*sp, "train", "--data", f"pack:{pack}", "--config", "hg2-lite", "--epochs", "50",
                        "--lr-drops", "40", "--batch", "8", "--out", str(out), "--cache-dir", str(tmp_path / "c"),
                        "--time-budget", "12", "--swap-after", "0", "--val-every", "50", "--device", "cpu",
                        "--augment", "small"],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "epochs fit 12 s" in r.stderr
    log = json.loads((out / "log.json").read_text())
    swaps = [e for e in log if e["kind"] == "swap"]
    assert swaps and all(e["samples"] == 16 for e in swaps)
    assert [e for e in log if e["kind"] == "val"][-1]["report"]["images"] > 0
    e = subprocess.run([*sp, "eval", str(out / "last.pt"), "--data", f"lsp:{data}/lspet@8501-8508", "--small", "48",
                        "--json", str(tmp_path / "e.json")], cwd=ROOT, capture_output=True, text=True)
    assert e.returncode == 0 and "limbs (12)" in e.stdout and "small (48 px)" in e.stdout, e.stderr[-2000:]
    assert json.loads((tmp_path / "e.json").read_text())["small"]["small"] == 48
    # shipped, the card measures on the real images the pack was made from, not on the pack's copies
    from train.ship import ship

    shipped = tmp_path / "models"
    shipped.mkdir()
    card = ship(out, "hg2-lite", ["streampose train ..."], dest=shipped)
    assert card["data"]["validation"] == f"lsp:{data}/lspet@8501-8508"
    assert card["validation"]["plain"]["images"] > 0
    assert sorted(p.name for p in shipped.iterdir()) == ["hg2-lite.json", "hg2-lite.pt"]
    # a failure while measuring leaves the shipped model as it was
    before = {p.name: p.read_bytes() for p in shipped.iterdir()}
    with pytest.raises(DatasetError):
        ship(out, "hg2-lite", ["streampose train ..."], val_spec=f"lsp:{tmp_path}/nowhere@1-8", dest=shipped)
    assert {p.name: p.read_bytes() for p in shipped.iterdir()} == before


@pytest.mark.cuda
def test_batches_made_on_the_gpu_equal_the_cpu_ones() -> None:
    images, joints = dots(4)
    kw = {"joint_set": LSP14, "crop": 110.0, "input_size": 128, "norm": Normalization(), "aug": Augment(), "seed": 1}
    keys = [(0, 0), (0, 1), (3, 2), (3, 3)]
    cpu = PoseBatches(images, joints, **kw)(keys)  # type: ignore[arg-type]
    gpu = PoseBatches(images, joints, device="cuda", **kw)(keys)  # type: ignore[arg-type]
    for a, b in zip(cpu[:3], gpu[:3], strict=True):
        torch.testing.assert_close(a, b.cpu(), atol=2e-3, rtol=1e-3)
