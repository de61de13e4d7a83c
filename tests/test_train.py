"""Training end to end on real LSPET images, tiny: train, interrupt-free resume, evaluate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from streampose import checkpoint as ck
from streampose import decode
from streampose.preprocess import Normalization
from train.config import TrainConfig, learning_rate
from train.data import Augment, CropCache, PoseBatches, gaussian_targets
from train.datasets import Dataset, load_lsp
from train.evaluate import lsp_pck, pck
from train.loop import Trainer
from train.losses import masked_mse


@pytest.fixture(scope="module")
def lspet(data: Path) -> Path:
    root = data / "lspet"
    if not (root / "joints.mat").is_file():
        pytest.skip(f"{root}/joints.mat missing from the shared data")
    return root


def tiny(lspet: Path, tmp: Path, **kw: object) -> Trainer:
    train = load_lsp(lspet, 1, 24)
    val = load_lsp(lspet, 8501, 8508)
    cfg = TrainConfig(out=str(tmp / "run"), cache_dir=str(tmp / "cache"), batch=8, checkpoint_every=2, **kw)  # type: ignore[arg-type]
    return Trainer(cfg, train, val)


@pytest.fixture
def one_thread() -> object:
    """Multi-threaded CPU kernels may sum gradients in an order that depends on machine load, which
    RMSprop amplifies; on one thread the arithmetic is the same every run, so exactness is testable."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.usefixtures("one_thread")
def test_resume_is_exact(lspet: Path, tmp_path: Path) -> None:
    straight = tiny(lspet, tmp_path / "a", epochs=2, max_steps=5)
    straight.run()
    split = tiny(lspet, tmp_path / "b", epochs=2, max_steps=3)
    split.run()
    cfg = TrainConfig(out=str(tmp_path / "b" / "run"), cache_dir=str(tmp_path / "b" / "cache"), batch=8,
                      checkpoint_every=2, epochs=2, max_steps=5)
    resumed = Trainer(cfg, split.train_set, split.val_sets, resume=True)
    assert resumed.step == 3
    resumed.run()
    assert resumed.step == straight.step == 5
    a, b = straight.net.state_dict(), resumed.net.state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], msg=k)
    log = json.loads((tmp_path / "b" / "run" / "log.json").read_text())
    assert any(e["kind"] == "val" for e in log)
    assert (tmp_path / "b" / "run" / "curve.png").stat().st_size > 1000
    c = ck.load(tmp_path / "b" / "run" / "last.pt")
    assert c.metadata["steps"] == 5 and c.metadata["trained"] and "limbs" in c.metadata["metrics"]


@pytest.mark.usefixtures("one_thread")
def test_averaged_weights_are_the_mean_of_the_epochs_and_resume_exactly(lspet: Path, tmp_path: Path) -> None:
    """--average-from 1 over 3 epochs of 3 steps: the saved weights are the mean of the trained weights at the
    ends of epochs 1 and 2 (batch-norm statistics too); the trained ones travel beside them; a run stopped
    mid-epoch and resumed ends with the same average."""
    ends = []
    for steps in (6, 9):
        t = tiny(lspet, tmp_path / f"plain{steps}", epochs=3, max_steps=steps)
        t.run()
        ends.append({k: v.clone() for k, v in t.net.state_dict().items()})
    averaged = tiny(lspet, tmp_path / "avg", epochs=3, average_from=1)
    saved = ck.load(averaged.run())
    assert saved.extra["averaged"] == 2
    for k, v in saved.state_dict.items():
        if v.is_floating_point():
            torch.testing.assert_close(v.float(), (ends[0][k].float() + ends[1][k].float()) / 2, msg=k)
        torch.testing.assert_close(saved.extra["live"][k], ends[1][k], msg=k)
    split = tiny(lspet, tmp_path / "split", epochs=3, average_from=1, max_steps=7)
    assert ck.load(split.run()).extra["averaged"] == 1  # epoch 1 whole; epoch 2's first step is not averaged
    cfg = TrainConfig(out=str(tmp_path / "split" / "run"), cache_dir=str(tmp_path / "split" / "cache"), batch=8,
                      checkpoint_every=2, epochs=3, average_from=1)
    resumed = Trainer(cfg, split.train_set, split.val_sets, resume=True)
    again = ck.load(resumed.run())
    assert again.extra["averaged"] == 2
    for k, v in saved.state_dict.items():
        torch.testing.assert_close(again.state_dict[k], v, msg=k)


@pytest.mark.usefixtures("one_thread")
def test_worker_processes_make_the_same_samples(lspet: Path, tmp_path: Path) -> None:
    """Detector frames are keyed by (epoch, index): made in worker processes (as beside a GPU) or in the
    training process, the run is the same, across an epoch boundary too."""
    kw = {"model": "person-det", "input_size": 64, "epochs": 2, "max_steps": 4}
    inline = tiny(lspet, tmp_path / "inline", workers=0, **kw)
    inline.run()
    workers = tiny(lspet, tmp_path / "workers", workers=2, **kw)
    workers.run()
    a, b = inline.net.state_dict(), workers.net.state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], msg=k)
    assert inline.steps_per_epoch == 3 and workers.step == 4


def test_init_carries_weights_to_another_input_size(lspet: Path, tmp_path: Path) -> None:
    small = tiny(lspet, tmp_path / "small", max_steps=1, input_size=64)
    small.run()
    big = tiny(lspet, tmp_path / "big", max_steps=1, input_size=128, init=str(tmp_path / "small" / "run" / "last.pt"))
    assert big.net.cfg.input_size == 128 and big.samples([(0, 0)])[0].shape[-1] == 128
    for k, v in small.net.state_dict().items():
        torch.testing.assert_close(big.net.state_dict()[k], v, msg=k)
    # hg2-lite's weights start the twice as wide hg2, widened (train/widen.py); never the other way round
    wide = tiny(lspet, tmp_path / "wide", model="hg2", input_size=64, init=str(tmp_path / "small" / "run" / "last.pt"))
    assert wide.net.cfg.features == 2 * small.net.cfg.features
    with pytest.raises(ValueError, match="only the input size may differ, or the features by a whole factor"):
        tiny(lspet, tmp_path / "other", init=str(wide.checkpoint(tmp_path / "wide.pt")))


def test_init_from_weights_with_an_inf_running_variance_trains_finite(lspet: Path, tmp_path: Path) -> None:
    """Older shipped fp16 files hold inf where a running variance outgrew fp16: training from them starts from
    fp16's largest value instead, so that averaged weights (--average-from) do not become nan."""
    small = tiny(lspet, tmp_path / "small", max_steps=1, input_size=64)
    c = ck.load(small.run())
    key = next(k for k in c.state_dict if k.endswith("running_var"))
    c.state_dict[key][0] = float("inf")
    path = ck.save(c, tmp_path / "inf.pt")
    t = tiny(lspet, tmp_path / "from", max_steps=3, input_size=64, init=str(path), average_from=0, epochs=1)
    assert t.net.state_dict()[key][0].item() == ck.FP16_MAX
    saved = ck.load(t.run())
    assert all(torch.isfinite(v).all() for v in saved.state_dict.values() if v.is_floating_point())


def test_training_reduces_loss_on_a_fixed_batch(lspet: Path, tmp_path: Path) -> None:
    t = tiny(lspet, tmp_path, epochs=1)
    assert isinstance(t.samples, PoseBatches)
    x, target, weight, _ = t.samples([(0, i) for i in range(8)])
    first = None
    for _ in range(8):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = masked_mse(t.net(x.contiguous(memory_format=torch.channels_last)), target, weight)
        t.opt.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        t.opt.step()
        first = first if first is not None else loss.item()
    assert loss.item() < 0.5 * first


def test_a_student_learns_its_teachers_heatmaps(lspet: Path, tmp_path: Path) -> None:
    """With `--teacher` the loss mixes the teacher's heatmaps of each crop in by `distill` (with `--teacher-flip`,
    its flip test's: the mirrored crop's maps mirrored back, left and right swapped); trained on them alone
    (distill 1), the student's maps move towards the teacher's, more than the same steps on the labels move them."""
    teacher = tiny(lspet, tmp_path / "teacher", max_steps=2, input_size=64).run()
    t0 = tiny(lspet, tmp_path / "labels", max_steps=6, input_size=64, epochs=1, bf16=False)
    t1 = tiny(lspet, tmp_path / "taught", max_steps=6, input_size=64, epochs=1, bf16=False, teacher=str(teacher),
              distill=1.0)
    assert isinstance(t1.samples, PoseBatches)
    x, target, weight, _ = t1.samples([(0, i) for i in range(8)])
    alone = ck.load(teacher).build()  # the teacher's own maps, one crop at a time, in numpy's mirror
    with torch.no_grad():
        each = torch.cat([alone(x[i : i + 1]) for i in range(len(x))])
        mirrored = torch.from_numpy(np.ascontiguousarray(alone(x.flip(-1)).numpy()[:, list(t1.joints.flip), :, ::-1]))
        assert t1.teacher is not None
        torch.testing.assert_close(t1.teacher.maps(x), each, atol=1e-4, rtol=1e-3)
        out, every = t1.net(x), torch.ones_like(weight)
        torch.testing.assert_close(t1.pose_loss(out, x, target, weight), masked_mse(out, each, every),
                                   atol=1e-6, rtol=1e-3)
        t1.cfg.distill = 0.0
        torch.testing.assert_close(t1.pose_loss(out, x, target, weight), masked_mse(out, target, weight))
        torch.testing.assert_close(t1.teacher.maps(x, flip_test=True), (each + mirrored) / 2, atol=1e-4, rtol=1e-3)
        t1.cfg.distill = 1.0
        start = masked_mse(t0.net(x), each, every).item()
    gap = {}
    for name, t in (("labels", t0), ("taught", t1)):
        t.run()
        with torch.no_grad():  # in training mode, as `start` was measured: batch statistics
            gap[name] = masked_mse(t.net(x), each, every).item()
    assert gap["taught"] < 0.7 * start and gap["taught"] < gap["labels"], (start, gap)
    with pytest.raises(ValueError, match="needs LSP14 at 128 px"):
        tiny(lspet, tmp_path / "other", teacher=str(teacher))


def test_samples_put_targets_on_the_joints(lspet: Path, tmp_path: Path) -> None:
    ds = load_lsp(lspet, 1, 10)
    cache = CropCache(ds, 128, tmp_path)
    samples = PoseBatches(cache.images, cache.joints, ds.joints, 128.0, 128, Normalization(), Augment.none())
    x, target, weight, _ = samples([(0, 0)])
    assert x.shape == (1, 3, 128, 128) and target.shape == (1, 14, 32, 32)
    # without augmentation the crop is the cached crop's centre: peaks sit at the joints
    j = cache.joints[0]
    c = (cache.side - 1) / 2
    in_crop = (j[:, :2] - c) + 63.5  # nominal scale: cache pixels = input pixels
    heat = (in_crop - 1.5) / 4
    for k in np.nonzero(weight[0].numpy())[0]:
        if (heat[k] >= 0).all() and (heat[k] <= 31).all():
            y, xx = np.unravel_index(int(target[0, k].argmax()), (32, 32))
            assert abs(xx - heat[k, 0]) <= 0.5 and abs(y - heat[k, 1]) <= 0.5
    assert CropCache(ds, 128, tmp_path).images.shape == cache.images.shape  # reused, not rebuilt


def test_masked_joints_do_not_count() -> None:
    target = torch.zeros(1, 2, 4, 4)
    out = torch.ones(1, 2, 4, 4)
    assert masked_mse([out], target, torch.tensor([[1.0, 0.0]])).item() == pytest.approx(0.5)


def test_gaussian_targets_peak_at_subpixel_centre() -> None:
    hm = gaussian_targets(torch.tensor([[5.3, 7.8]]), 16)
    assert hm.max() <= 1.0 and hm[0, 8, 5] == hm.max()


def test_learning_rate_drops() -> None:
    cfg = TrainConfig(lr=1.0, lr_drops=[2, 4])
    assert [learning_rate(cfg, e) for e in range(6)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])


def test_pck_hand_computed() -> None:
    gt = np.array([[[0, 0, 1], [10, 0, 1], [0, 0, 0]], [[0, 0, 1], [0, 0, 1], [5, 5, 1]]], np.float32)
    pred = np.array([[[1, 0], [10, 3], [99, 99]], [[0, 3], [0, 1], [5, 5]]], np.float32)
    scored = gt[..., 2] > 0
    rate, counts = pck(pred, gt, scored, ref=np.array([10.0, 10.0]), threshold=0.2)  # threshold 2 px
    # joint 0: 1 px hit, 3 px miss -> 0.5; joint 1: 3 px miss, 1 px hit -> 0.5; joint 2: unlabelled once, hit once
    np.testing.assert_allclose(rate, [0.5, 0.5, 1.0])
    np.testing.assert_array_equal(counts, [2, 2, 1])


def test_lsp_protocol_skips_images_without_torso() -> None:
    j = np.zeros((14, 3), np.float32)
    j[:, :2] = np.arange(28).reshape(14, 2)
    j[:, 2] = 1
    no_torso = j.copy()
    no_torso[2, 2] = 0  # r_hip unlabelled
    from streampose.joints import LSP14
    from train.datasets import Annotation

    ds = Dataset("t", LSP14, [Annotation(Path("a"), j, (0, 0), 1.0), Annotation(Path("b"), no_torso, (0, 0), 1.0)])
    pred = np.stack([j, j])
    pred[0, 0, 0] += 100  # one miss
    rep = lsp_pck(pred, ds)
    assert rep.images == 1 and rep.skipped == 1
    assert rep.per_joint["r_ankle"] == 0.0 and rep.per_joint["l_ankle"] == 1.0
    assert rep.limbs == pytest.approx(11 / 12)


def test_cli_train_resume_eval_and_ship(lspet: Path, tmp_path: Path) -> None:
    """The commands a user runs: train a few steps, resume, evaluate, ship with a model card."""
    import subprocess
    import sys

    from train.ship import revalidate, ship

    exe = str(Path(sys.executable).parent / "streampose")
    run = tmp_path / "run"
    common = ["--data", f"lsp:{lspet}", "--val", f"lsp:{lspet}@8501-8506", "--limit", "16", "--batch", "8",
              "--out", str(run), "--cache-dir", str(tmp_path / "cache")]
    r = subprocess.run([exe, "train", *common, "--max-steps", "1"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([exe, "train", *common, "--max-steps", "2", "--resume"], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert "resuming" in r.stderr and "trained 2 steps" in r.stdout
    out = tmp_path / "eval.json"
    r = subprocess.run([exe, "eval", str(run / "last.pt"), "--data", f"lsp:{lspet}@8501-8506", "--flip",
                        "--full-image", "--crop", "track+detect", "--json", str(out)], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert "l_wrist" in r.stdout and "limbs (12)" in r.stdout and "full image" in r.stdout
    report = json.loads(out.read_text())
    assert report["flip"] is True and report["full_image"]["found"] == report["full_image"]["of"] == 6
    card = ship(run, "hg2-lite", ["streampose train ..."], dest=tmp_path)
    assert card["training"]["steps"] == 2 and set(card["validation"]) == {"plain", "flip"}
    shipped = ck.load(tmp_path / "hg2-lite.pt", joints="LSP14")
    assert all(v.dtype == torch.float16 for v in shipped.state_dict.values() if v.is_floating_point())
    assert card["weights"]["dtype"] == "float16"  # nothing beyond fp16's range in a tiny run
    assert not shipped.extra  # no optimizer state in shipped weights
    assert card["validated_with"]["decode_blur"] == decode.BLUR
    # after a change to the decoding, the card's figures are measured again and the rest of the card kept
    path = tmp_path / "hg2-lite.json"
    path.write_text(json.dumps({**card, "validation": {"plain": {"limbs": -1.0}}, "engines": {"openvino-int8": {}}}))
    again = revalidate("hg2-lite", dest=tmp_path)
    assert again["validation"] == card["validation"] and again["engines"] == {"openvino-int8": {}}
    assert json.loads(path.read_text()) == again and again["training"] == json.loads(json.dumps(card["training"]))
    # a second phase started from the first (as hg2: 128 px, then 256 px): its card keeps the first's record
    second = [*common[:-4], "--out", str(tmp_path / "run2"), "--cache-dir", str(tmp_path / "cache")]
    r = subprocess.run([exe, "train", *second, "--max-steps", "1", "--init", str(run / "last.pt"),
                        "--input-size", "64"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    (tmp_path / "second").mkdir()
    card = ship(tmp_path / "run2", "hg2-lite", ["streampose train ..."], dest=tmp_path / "second")
    assert card["training"]["steps"] == 1 and card["training"]["started_from"]["steps"] == 2
    # and a third phase from the second: the card follows the chain back to the first
    r = subprocess.run([exe, "train", *second[:-4], "--out", str(tmp_path / "run3"), "--cache-dir",
                        str(tmp_path / "cache"), "--max-steps", "1", "--init", str(tmp_path / "run2" / "last.pt"),
                        "--input-size", "64"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    card = ship(tmp_path / "run3", "hg2-lite", ["streampose train ..."], dest=tmp_path / "second")
    history = card["training"]["started_from"]
    assert history["weights"] == str(tmp_path / "run2" / "last.pt") and history["started_from"]["steps"] == 2
    bad = subprocess.run([exe, "train", "--data", "nope:x"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "FORMAT:PATH" in bad.stderr and "Traceback" not in bad.stderr


def test_a_detector_trains_on_two_datasets_resumes_ships_and_finds_people_in_a_run(
        lspet: Path, data: Path, tmp_path: Path, studio_clip: Path) -> None:
    """`--config person-det`: a few steps on whole frames composed of LSPET and LSP images (at 64 px, to be
    quick), each validation set reported; resumed exactly where it stopped; shipped with a card that scores it;
    evaluated by `streampose eval`; and a run on a real clip finds people with it (the trained detector's
    maps through the runtime: exactly one message per frame, whoever it finds)."""
    import subprocess
    import sys

    from streampose.detector import open_detector
    from streampose.runtime import PoseStream
    from train.ship import ship

    lsp = data / "lsp"
    if not (lsp / "joints.mat").is_file():
        pytest.skip(f"{lsp}/joints.mat missing from the shared data")
    exe = str(Path(sys.executable).parent / "streampose")
    run = tmp_path / "det"
    common = ["--config", "person-det", "--data", f"lsp:{lspet}@1-12", "--data", f"lsp:{lsp}@1-4",
              "--val", f"lsp:{lspet}@8501-8504", "--val", f"lsp:{lsp}@901-903", "--batch", "4", "--input-size", "64",
              "--optimizer", "adam", "--lr", "1e-3", "--out", str(run)]
    r = subprocess.run([exe, "train", *common, "--max-steps", "2"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "top-1 recall" in r.stderr and f"lsp:{lsp}@901-903" in r.stderr  # both validation sets reported
    r = subprocess.run([exe, "train", *common, "--max-steps", "3", "--resume"], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0 and "trained 3 steps" in r.stdout, r.stderr
    c = ck.load(run / "last.pt")
    assert c.config.head == "centernet" and c.joints.name == "PERSON" and c.metadata["steps"] == 3
    assert c.metadata["data"] == f"lsp:{lspet}@1-12 + lsp:{lsp}@1-4"
    vals = [e for e in json.loads((run / "log.json").read_text()) if e["kind"] == "val"]
    assert vals and set(vals[-1]["reports"]) == {f"lsp:{lspet}@8501-8504", f"lsp:{lsp}@901-903"}
    assert 0 <= vals[-1]["recall"] <= 1
    card = ship(run, "person-det", ["streampose train ..."], dest=tmp_path)
    assert set(card["validation"][f"lsp:{lsp}@901-903"]) == {"top1", "composites"}
    out = tmp_path / "det.json"
    r = subprocess.run([exe, "eval", str(tmp_path / "person-det.pt"), "--data", f"lsp:{lspet}@8501-8504",
                        "--composites", "3", "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "top-1 recall@0.5" in r.stdout and "false positives per frame" in r.stdout
    assert json.loads(out.read_text())["composites"]["frames"] == 3
    with open_detector(tmp_path / "person-det.pt", backend="torch", threshold=0.0) as det:
        assert det.backend.info.input_size == 64
        with PoseStream(str(studio_clip), backend="torch", detector=det, people=2) as stream:
            results = [r for _, r in zip(range(6), stream, strict=False)]
    assert [r.frame.index for r in results] == list(range(6))
    assert all(len(r.poses) == 2 for r in results)  # threshold 0: someone, whatever it found, and ids for them
    assert all({p.id for p in r.poses} <= set(range(12)) for r in results)


def test_a_finished_run_is_never_overwritten(lspet: Path, tmp_path: Path) -> None:
    t = tiny(lspet, tmp_path, epochs=1, max_steps=1)
    t.run()
    with pytest.raises(FileExistsError, match="--resume"):
        tiny(lspet, tmp_path, epochs=1, max_steps=1)


def test_eval_scores_mpii_with_pckh(data: Path, tmp_path: Path) -> None:
    """valid.h5's first rows are the MPII images shipped in the shared data: PCKh runs on them."""
    import subprocess
    import sys

    from streampose.joints import MPII16
    from streampose.model import HourglassConfig

    h5 = data / "mpii" / "valid.h5"
    if not h5.is_file():
        pytest.skip(f"{h5} missing from the shared data")
    model = ck.save(ck.Checkpoint(HourglassConfig(stacks=1, features=32, joints=16, input_size=64), MPII16),
                    tmp_path / "mpii.pt")
    exe = str(Path(sys.executable).parent / "streampose")
    r = subprocess.run([exe, "eval", str(model), "--data", f"mpii:{h5}", "--limit", "5"], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "PCKh@0.5" in r.stdout and "upper_neck" in r.stdout
    r = subprocess.run([exe, "eval", str(model), "--data", f"lsp:{data / 'lspet'}@8501-8502"], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 1 and "predicts MPII16 joints but LSP14 was requested" in r.stderr


def test_revalidate_of_an_unknown_model_is_a_one_line_error() -> None:
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "train.ship", "--revalidate", "no-such-model"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2 and "no shipped model card" in r.stderr and "hg2-lite" in r.stderr
    assert "Traceback" not in r.stderr
