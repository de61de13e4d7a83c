"""The training loop: intermediate supervision, RMSprop, checkpoints, exact resume, validation.

Everything random is derived from (seed, epoch, index): the sample order of an epoch and each
sample's augmentation. With the optimizer state and the step counter in the checkpoint, a resumed
run continues exactly where the interrupted one stopped.
"""

from __future__ import annotations

import json
import math
import os
import platform
import signal
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from types import FrameType
from typing import Any

import cv2
import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel
from tqdm import tqdm

import streampose
from streampose import checkpoint as ck
from streampose import models
from streampose.backends.torch_backend import TorchBackend
from streampose.detector import PersonDetector
from streampose.info import cpu
from streampose.model import StackedHourglass
from streampose.preprocess import Normalization
from train.config import AUGMENTS, TrainConfig, learning_rate, make_optimizer, pick_device
from train.curve import plot_curve
from train.data import Augment, CropCache, PoseBatches
from train.datasets import Dataset
from train.detect_data import DetectAugment, DetectSamples, FrameImages, centernet_loss
from train.detect_eval import top1
from train.evaluate import score
from train.losses import choose_mirrored, masked_mse
from train.pack import Pack
from train.teacher import Teacher
from train.widen import widen

PROBE_STEPS = 60
"""With a time budget, the first steps are timed to fit the schedule (epochs and drops) into the budget."""


class _Stop(Exception):
    """SIGTERM, turned into an orderly stop like Ctrl-C."""


class Trainer:
    """Trains a pose model on person crops, or a detector (a `centernet` config) on whole frames composed of
    the same pose data; validates each epoch on every validation set (pose: PCK; detector: top-1 recall)."""

    def __init__(self, cfg: TrainConfig, train_set: Dataset | Pack,
                 val_set: Dataset | Sequence[Dataset] | None, resume: bool = False) -> None:
        self.cfg, self.train_set = cfg, train_set
        self.val_sets = [] if val_set is None else [val_set] if isinstance(val_set, Dataset) else list(val_set)
        preset = models.PRESETS[cfg.model]
        self.detector = preset.config.head == "centernet"
        self.joints = preset.joints
        data_joints = train_set.joint_set if isinstance(train_set, Pack) else train_set.joints
        if not self.detector and data_joints.name != preset.joints.name:
            raise ValueError(f"{cfg.model} predicts {preset.joints.name} but the data has {data_joints.name}")
        self.data_name = (f"{train_set.describe('train')} (packed in {train_set.path.name})"
                          if isinstance(train_set, Pack) else train_set.name)
        self.out = Path(cfg.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.norm = Normalization()
        torch.manual_seed(cfg.seed)
        config = preset.config
        if cfg.input_size:
            config = replace(config, input_size=cfg.input_size)
        self.net = StackedHourglass(config)
        if cfg.init and not resume:
            self._init_from(Path(cfg.init))
        self.device = pick_device(cfg.device)
        self.net = self.net.to(self.device)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        self.machine = (torch.cuda.get_device_name(self.device) if self.device.type == "cuda"
                        else f"{cpu()['model']}, {cpu()['cores']} cores") + f", torch {torch.__version__}"
        self.opt = make_optimizer(cfg.optimizer, self.net.parameters(), cfg.lr)
        self.step = 0
        self.log: list[dict[str, Any]] = []
        self.seconds = 0.0
        self.average: AveragedModel | None = None
        if resume:
            self._resume()
        elif self.last_path.exists():
            raise FileExistsError(f"{self.last_path} exists: continue it with --resume, or choose another --out")
        if cfg.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.samples: PoseBatches | DetectSamples
        self.augment: Augment | DetectAugment
        if self.detector:
            self.augment = DetectAugment()
            frames = (FrameImages.from_pack(train_set, train_set.select("train")) if isinstance(train_set, Pack)
                      else FrameImages(train_set))
            self.samples = DetectSamples(frames, config.input_size, self.norm, self.augment,
                                         seed=cfg.seed, stride=config.stride)
        else:
            self.augment = AUGMENTS[cfg.augment]
            if isinstance(train_set, Pack):
                crop, keep = train_set.crop, train_set.select("train")  # a frames pack: a clear error here
                images, joints = np.asarray(train_set.images)[keep], train_set.joints[keep]
                self.names = [train_set.source(int(i)) for i in keep]
            else:
                cache = CropCache(train_set, config.input_size, cfg.cache_dir)
                images, joints, crop = cache.images, cache.joints, float(config.input_size)
                self.names = [a.image.name for a in train_set.items]
            self.samples = PoseBatches(images, joints, self.joints, crop, config.input_size, self.norm, self.augment,
                                       seed=cfg.seed, stride=config.stride, device=self.device)
        self.teacher: Teacher | None = None
        if cfg.teacher:
            if self.detector:
                raise ValueError("--teacher: a detector learns from its boxes only")
            self.teacher = Teacher(cfg.teacher, self.net.cfg, self.joints, self.device, cfg.bf16, cfg.channels_last)
        self._flip = torch.tensor(self.joints.flip, device=self.device)  # left <-> right, for mirrored labels
        self.steps_per_epoch = math.ceil(len(self.samples) / cfg.batch)
        self._swaps: list[tuple[torch.Tensor, list[int]]] = []

    @property
    def last_path(self) -> Path:
        return self.out / "last.pt"

    def _init_from(self, path: Path) -> None:
        """Fine-tune from another run: the hourglass is fully convolutional, so weights trained at one
        input size are a good start at another (progressive resizing: cheap epochs small, last ones large).
        A narrower model's weights are widened to this one's feature count (train/widen.py)."""
        c = ck.load(path)
        same = replace(c.config, input_size=self.net.cfg.input_size)
        # fp16 files shipped before 2026-12-06 hold an inf running variance where fp32 had > 65504
        state = {k: ck.finite(v) if v.is_floating_point() else v for k, v in c.state_dict.items()}
        if replace(same, features=self.net.cfg.features) != self.net.cfg or self.net.cfg.features % same.features:
            raise ValueError(f"--init {path} holds a {c.config} model; {self.cfg.model} needs {self.net.cfg} "
                             "(only the input size may differ, or the features by a whole factor)")
        if same.features != self.net.cfg.features:
            state = widen({k: v.float() for k, v in state.items()}, same, self.net.cfg, seed=self.cfg.seed)
        self.net.load_state_dict(state)
        print(f"starting from the weights of {path} ({c.config.input_size} px, {c.config.features} features)",
              file=sys.stderr)

    def _resume(self) -> None:
        if not self.last_path.is_file():
            raise FileNotFoundError(f"{self.last_path}: nothing to resume; start without --resume")
        c = ck.load(self.last_path)
        if c.config != self.net.cfg:
            raise ValueError(f"{self.last_path} holds a {c.config} model, not {self.cfg.model}")
        self.net.load_state_dict(c.extra.get("live", c.state_dict))
        if c.extra.get("averaged"):
            self.average = AveragedModel(self.net, use_buffers=True)
            self.average.module.load_state_dict(c.state_dict)
            self.average.n_averaged.fill_(int(c.extra["averaged"]))
        self.opt.load_state_dict(c.extra["optimizer"])
        self.step = int(c.extra["step"])
        self.log = list(c.extra["log"])
        self.seconds = float(c.extra["seconds"])
        if self.cfg.time_budget:  # the schedule the budget fitted, not the one asked for
            saved = c.metadata.get("train_config", {})
            self.cfg.epochs, self.cfg.lr_drops = int(saved["epochs"]), list(saved["lr_drops"])
        print(f"resuming {self.last_path} at step {self.step}", file=sys.stderr)

    def checkpoint(self, path: Path) -> Path:
        """The model (the average, once averaging began), its metadata and the training state (optimizer, step,
        log; the trained weights beside an average) in one file."""
        state = {k: v.contiguous() for k, v in self.weights().state_dict().items()}
        extra = {"optimizer": self.opt.state_dict(), "step": self.step, "log": self.log, "seconds": self.seconds}
        if self.average is not None:
            extra["live"] = {k: v.contiguous() for k, v in self.net.state_dict().items()}
            extra["averaged"] = int(self.average.n_averaged)
        meta = {
            "name": self.cfg.model,
            "trained": True,
            "data": self.data_name,
            "validation": " + ".join(v.name for v in self.val_sets) or None,
            "steps": self.step,
            "epochs": self.step / self.steps_per_epoch,
            "training_seconds": round(self.seconds, 1),
            "train_config": asdict(self.cfg),
            "augmentation": asdict(self.augment),
            "metrics": self.last_metrics(),
            "machine": self.machine,
            "versions": {"streampose": streampose.__version__, "torch": torch.__version__,
                         "python": platform.python_version()},
        }
        c = ck.Checkpoint(self.net.cfg, self.joints, self.norm, meta, state, extra)
        return ck.save(c, path)

    def weights(self) -> torch.nn.Module:
        """What is validated and saved: the average of the epochs' weights once averaging began, else the net."""
        return self.net if self.average is None else self.average.module

    def last_metrics(self) -> dict[str, Any]:
        vals = [e for e in self.log if e.get("kind") == "val"]
        return vals[-1]["report"] if vals else {}

    def validate(self) -> dict[str, dict[str, Any]]:
        """Each validation set's report (as a dict), by the set's name."""
        self.net.eval()
        c = ck.Checkpoint(self.net.cfg, self.joints, self.norm, state_dict=self.weights().state_dict())
        backend = TorchBackend(c, device=str(self.device))
        out = {}
        for v in self.val_sets:
            if self.detector:
                out[v.name] = top1(PersonDetector(backend), v, progress=False).to_dict()
            else:
                out[v.name] = score(backend, v, flip=self.cfg.flip_val, progress=False).to_dict()
        self.net.train()
        return out

    def batches(self, total: int) -> Iterable[tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[int] | None]]:
        """Batches from the current step to `total`. Pose batches are made on the training device; detector
        frames by worker processes where there are cores to spare. Each batch is a list of (epoch, index) keys,
        so workers never need to be told the epoch."""
        keys = EpochBatches(self.cfg, len(self.samples), self.step, total)
        if isinstance(self.samples, PoseBatches):
            return map(self.samples, keys)
        workers = self.cfg.workers
        if workers < 0:
            workers = 0 if self.device.type == "cpu" else min(8, max(1, (os.cpu_count() or 1) - 1))
        if workers:
            # Workers warp one sample at a time: OpenCV's thread pool in each would only oversubscribe
            # the cores (15 workers made ~750 samples/s on a 16-core GPU host). Set before they fork:
            # changing it inside a forked worker hangs.
            cv2.setNumThreads(1)
        loader = torch.utils.data.DataLoader(self.samples, batch_sampler=keys, num_workers=workers,
                                             pin_memory=self.device.type == "cuda")
        return ((x, t, w, None) for x, t, w in loader)

    def run(self) -> Path:
        """Train to the end (or max_steps); returns the final checkpoint's path."""
        cfg = self.cfg
        total = cfg.epochs * self.steps_per_epoch
        if cfg.max_steps:
            total = min(total, cfg.max_steps)
        old = signal.signal(signal.SIGTERM, self._on_term)
        cv_threads = cv2.getNumThreads()  # batches() may lower it for its workers
        bar = tqdm(total=total, initial=self.step, desc=f"train {cfg.model}", unit="step", disable=None)
        try:
            self.net.train()
            if cfg.time_budget and self.step == 0:
                t_start = time.perf_counter()
                warm = min(PROBE_STEPS // 6, total)  # start-up, kernel choice and loader processes: not timed
                self._steps(self.batches(warm), warm, bar)
                t0 = time.perf_counter()
                probe = min(PROBE_STEPS, total)
                self._steps(self.batches(probe), probe, bar)
                rate = (probe - warm) / max(time.perf_counter() - t0, 1e-9)
                total = self._fit_budget(rate, total, time.perf_counter() - t_start)
                bar.total = total
            self._steps(self.batches(total), total, bar)
        except (KeyboardInterrupt, _Stop):
            bar.close()
            self.checkpoint(self.last_path)
            self.write_log()
            print(f"\ninterrupted at step {self.step}: saved {self.last_path}; continue with --resume",
                  file=sys.stderr)
            raise KeyboardInterrupt from None
        finally:
            signal.signal(signal.SIGTERM, old)
            cv2.setNumThreads(cv_threads)
            bar.close()
        if self.step % self.steps_per_epoch or (self.step // self.steps_per_epoch) % cfg.val_every:
            self._end_of_epoch((self.step - 1) // self.steps_per_epoch, validate=True)  # the last pass, always
        final = self.checkpoint(self.last_path)
        self.write_log()
        return final

    def _fit_budget(self, steps_per_second: float, total: int, spent: float) -> int:
        """Shrinks the schedule to the steps that fit the time budget (5 % kept for validation); the drops keep
        their place relative to the last epoch. Returns the new total."""
        cfg = self.cfg
        fit = self.step + int(steps_per_second * (cfg.time_budget * 0.95 - spent))
        epochs = max(1, min(cfg.epochs, fit // self.steps_per_epoch))
        if epochs < cfg.epochs:
            cfg.lr_drops = [round(d * epochs / cfg.epochs) for d in cfg.lr_drops]
            print(f"\n{steps_per_second:.1f} steps/s: {epochs} of {cfg.epochs} epochs fit {cfg.time_budget:.0f} s; "
                  f"rate drops at {cfg.lr_drops}", file=sys.stderr)
            cfg.epochs = epochs
        total = epochs * self.steps_per_epoch
        return min(total, cfg.max_steps) if cfg.max_steps else total

    def _on_term(self, signum: int, frame: FrameType | None) -> None:
        raise _Stop

    def _steps(self, batches: Iterable[tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[int] | None]],
               total: int, bar: tqdm) -> None:
        cfg = self.cfg
        window = torch.zeros((), device=self.device)
        n_window, t_window = 0, time.perf_counter()
        for x, target, weight, index in batches:
            t0 = time.perf_counter()
            epoch = self.step // self.steps_per_epoch
            lr = learning_rate(cfg, epoch)
            for group in self.opt.param_groups:
                group["lr"] = lr
            x = x.to(self.device, non_blocking=True)
            if cfg.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            target, weight = target.to(self.device, non_blocking=True), weight.to(self.device, non_blocking=True)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
                outputs = self.net(x)
            if self.detector:
                loss = centernet_loss(outputs, target, weight)
            else:
                if index is not None and 0 <= cfg.swap_after <= epoch:
                    swap = choose_mirrored(outputs[-1], target, weight, self._flip, cfg.swap_margin)
                    target = torch.where(swap[:, None, None, None], target[:, self._flip], target)
                    weight = torch.where(swap[:, None], weight[:, self._flip], weight)
                    self._swaps.append((swap, index))
                loss = self.pose_loss(outputs, x, target, weight)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            self.opt.step()
            self.step += 1
            self.seconds += time.perf_counter() - t0
            window += loss.detach()
            n_window += 1
            bar.update(1)
            if self.step % cfg.log_every == 0:
                mean_loss = window.item() / n_window  # the only GPU sync: once per log_every steps
                speed = n_window * cfg.batch / (time.perf_counter() - t_window)
                entry = {"kind": "train", "step": self.step, "epoch": epoch, "loss": mean_loss, "lr": lr,
                         "img_s": round(speed, 1)}
                self.log.append(entry)
                bar.set_postfix(loss=f"{mean_loss:.2e}", img_s=f"{speed:.0f}", epoch=epoch)
                if bar.disable and self.step % (4 * cfg.log_every) == 0:  # no terminal: a plain line instead
                    print(f"step {self.step}/{total} epoch {epoch} loss {mean_loss:.3e} {speed:.0f} img/s",
                          file=sys.stderr)
                window.zero_()
                n_window, t_window = 0, time.perf_counter()
            if self.step % self.steps_per_epoch == 0:
                t_val = time.perf_counter()
                self._end_of_epoch(epoch, validate=(epoch + 1) % cfg.val_every == 0)
                t_window += time.perf_counter() - t_val  # the speed is of training steps, not validation
            elif self.step % cfg.checkpoint_every == 0:
                self.checkpoint(self.last_path)
            if self.step >= total:
                return

    def pose_loss(self, outputs: list[torch.Tensor], x: torch.Tensor, target: torch.Tensor, weight: torch.Tensor
                  ) -> torch.Tensor:
        """The labels' loss, and with a teacher, its heatmaps' (every joint) mixed in by `distill`."""
        loss = masked_mse(outputs, target, weight)
        if self.teacher is None:
            return loss
        taught = self.teacher.maps(x, flip_test=self.cfg.teacher_flip)
        return (1 - self.cfg.distill) * loss + self.cfg.distill * masked_mse(outputs, taught, torch.ones_like(weight))

    def _log_swaps(self, epoch: int) -> None:
        """How many samples of the epoch trained on mirrored labels, and which images."""
        if not self._swaps:
            return
        chosen = torch.cat([s for s, _ in self._swaps]).cpu().numpy()
        index = [i for _, idx in self._swaps for i in idx]
        images = sorted({self.names[i] for i, c in zip(index, chosen, strict=True) if c})
        self.log.append({"kind": "swap", "step": self.step, "epoch": epoch, "swapped": int(chosen.sum()),
                         "samples": len(chosen), "images": images})
        print(f"\nepoch {epoch}: {int(chosen.sum())} of {len(chosen)} samples trained on mirrored labels "
              f"({len(images)} images)", file=sys.stderr)
        self._swaps = []

    def _end_of_epoch(self, epoch: int, validate: bool = True) -> None:
        self._log_swaps(epoch)
        averaged = 0 if self.average is None else int(self.average.n_averaged)
        whole = self.step % self.steps_per_epoch == 0  # not a run's stop mid-epoch (max_steps)
        if whole and 0 <= self.cfg.average_from and self.cfg.average_from + averaged <= epoch:  # each epoch once
            if self.average is None:
                self.average = AveragedModel(self.net, use_buffers=True)
            self.average.update_parameters(self.net)
        reports = self.validate() if validate else {}
        if reports:
            first = next(iter(reports.values()))  # the curve follows the first set; the log keeps them all
            keys = ("recall", "mean_iou") if self.detector else ("limbs", "all")
            entry = {"kind": "val", "step": self.step, "epoch": epoch, **{k: first[k] for k in keys}}
            self.log.append({**entry, "report": first, "reports": reports})
            for name, r in reports.items():
                said = (f"top-1 recall {100 * r['recall']:.1f}  mean IoU {r['mean_iou']:.3f}" if self.detector else
                        f"{r['metric']} limbs {100 * r['limbs']:.1f}  all {100 * r['all']:.1f}")
                print(f"\nepoch {epoch} {name}: {said}", file=sys.stderr)
        self.checkpoint(self.last_path)
        self.write_log()

    def write_log(self) -> None:
        (self.out / "log.json").write_text(json.dumps(self.log, indent=1))
        plot_curve(self.log, self.out / "curve.png", self.cfg.model)


class EpochBatches:
    """Batches of (epoch, index) keys from `start` to `end` steps: each epoch a fresh permutation drawn
    from (seed, epoch), so the order depends only on the step, never on how the run was interrupted."""

    def __init__(self, cfg: TrainConfig, n: int, start: int, end: int) -> None:
        self.cfg, self.n, self.start, self.end = cfg, n, start, end
        self.per_epoch = math.ceil(n / cfg.batch)

    def __len__(self) -> int:
        return max(0, self.end - self.start)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        b, order, order_epoch = self.cfg.batch, np.arange(0), -1
        for step in range(self.start, self.end):
            epoch, pos = divmod(step, self.per_epoch)
            if epoch != order_epoch:
                order, order_epoch = np.random.default_rng((self.cfg.seed, epoch)).permutation(self.n), epoch
            yield [(epoch, int(i)) for i in order[pos * b : (pos + 1) * b]]
