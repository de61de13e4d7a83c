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
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from types import FrameType
from typing import Any

import cv2
import numpy as np
import torch
from tqdm import tqdm

import streampose
from streampose import checkpoint as ck
from streampose import models
from streampose.backends.torch_backend import TorchBackend
from streampose.detector import PersonDetector
from streampose.info import cpu
from streampose.model import StackedHourglass
from streampose.preprocess import Normalization
from train.data import Augment, CropCache, PoseSamples
from train.datasets import Dataset
from train.detect_data import DetectAugment, DetectSamples, FrameImages, centernet_loss
from train.detect_eval import top1
from train.evaluate import score
from train.widen import widen

OPTIMIZERS = ("rmsprop", "adam", "sgd")


@dataclass
class TrainConfig:
    model: str = models.DEFAULT
    out: str = "runs/hg2-lite"
    epochs: int = 30
    batch: int = 16
    lr: float = 2.5e-4
    optimizer: str = "rmsprop"
    lr_drops: list[int] = field(default_factory=list)
    """Epochs (0-based) from which the learning rate is multiplied by 0.1 once more."""
    checkpoint_every: int = 500
    max_steps: int = 0
    """Stop after this many steps in total (0: run all epochs)."""
    seed: int = 0
    bf16: bool = True
    channels_last: bool = True
    flip_val: bool = False
    cache_dir: str = "runs/cache"
    log_every: int = 25
    input_size: int = 0
    """Train at this input size instead of the preset's (0: the preset's)."""
    init: str = ""
    """Start from this checkpoint's weights (same stacks, features, joints; any input size)."""
    device: str = "auto"
    """cpu, cuda, cuda:N, or auto (the GPU where torch sees one)."""
    workers: int = -1
    """Sample-making processes (-1: none on CPU, where the model needs both cores; up to 8 beside a GPU)."""

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.model not in models.PRESETS:
            raise ValueError(f"unknown model config {self.model!r}; choose from {', '.join(models.PRESETS)}")


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: this torch build sees no GPU; use --device cpu")
    return torch.device(name)


def make_optimizer(name: str, params: Iterator[torch.nn.Parameter], lr: float) -> torch.optim.Optimizer:
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr)  # the paper's choice
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    return torch.optim.SGD(params, lr=lr, momentum=0.9)


def learning_rate(cfg: TrainConfig, epoch: int) -> float:
    return cfg.lr * 0.1 ** sum(epoch >= d for d in cfg.lr_drops)


def masked_mse(outputs: list[torch.Tensor], target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """MSE summed over stacks (intermediate supervision); unlabelled joints weigh nothing."""
    w = weight[:, :, None, None]
    return sum((((o.float() - target) ** 2) * w).mean() for o in outputs)  # type: ignore[return-value]


class _Stop(Exception):
    """SIGTERM, turned into an orderly stop like Ctrl-C."""


class Trainer:
    """Trains a pose model on person crops, or a detector (a `centernet` config) on whole frames composed of
    the same pose data; validates each epoch on every validation set (pose: PCK; detector: top-1 recall)."""

    def __init__(self, cfg: TrainConfig, train_set: Dataset, val_set: Dataset | Sequence[Dataset] | None,
                 resume: bool = False) -> None:
        self.cfg, self.train_set = cfg, train_set
        self.val_sets = [] if val_set is None else [val_set] if isinstance(val_set, Dataset) else list(val_set)
        preset = models.PRESETS[cfg.model]
        self.detector = preset.config.head == "centernet"
        self.joints = preset.joints
        if not self.detector and train_set.joints.name != preset.joints.name:
            raise ValueError(f"{cfg.model} predicts {preset.joints.name} but the data has {train_set.joints.name}")
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
        if resume:
            self._resume()
        elif self.last_path.exists():
            raise FileExistsError(f"{self.last_path} exists: continue it with --resume, or choose another --out")
        if cfg.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.samples: PoseSamples | DetectSamples
        if self.detector:
            self.augment: Augment | DetectAugment = DetectAugment()
            self.samples = DetectSamples(FrameImages(train_set), config.input_size, self.norm, self.augment,
                                         seed=cfg.seed, stride=config.stride)
        else:
            self.augment = Augment()
            cache = CropCache(train_set, config.input_size, cfg.cache_dir)
            self.samples = PoseSamples(cache, self.norm, self.augment, seed=cfg.seed, stride=config.stride)
        self.steps_per_epoch = math.ceil(len(self.samples) / cfg.batch)

    @property
    def last_path(self) -> Path:
        return self.out / "last.pt"

    def _init_from(self, path: Path) -> None:
        """Fine-tune from another run: the hourglass is fully convolutional, so weights trained at one
        input size are a good start at another (progressive resizing: cheap epochs small, last ones large).
        A narrower model's weights are widened to this one's feature count (train/widen.py)."""
        c = ck.load(path)
        same = replace(c.config, input_size=self.net.cfg.input_size)
        state = c.state_dict
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
        self.net.load_state_dict(c.state_dict)
        self.opt.load_state_dict(c.extra["optimizer"])
        self.step = int(c.extra["step"])
        self.log = list(c.extra["log"])
        self.seconds = float(c.extra["seconds"])
        print(f"resuming {self.last_path} at step {self.step}", file=sys.stderr)

    def checkpoint(self, path: Path) -> Path:
        """The model, its metadata and the training state (optimizer, step, log) in one file."""
        state = {k: v.contiguous() for k, v in self.net.state_dict().items()}
        extra = {"optimizer": self.opt.state_dict(), "step": self.step, "log": self.log, "seconds": self.seconds}
        meta = {
            "name": self.cfg.model,
            "trained": True,
            "data": self.train_set.name,
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

    def last_metrics(self) -> dict[str, Any]:
        vals = [e for e in self.log if e.get("kind") == "val"]
        return vals[-1]["report"] if vals else {}

    def validate(self) -> dict[str, dict[str, Any]]:
        """Each validation set's report (as a dict), by the set's name."""
        self.net.eval()
        c = ck.Checkpoint(self.net.cfg, self.joints, self.norm, state_dict=self.net.state_dict())
        backend = TorchBackend(c, device=str(self.device))
        out = {}
        for v in self.val_sets:
            if self.detector:
                out[v.name] = top1(PersonDetector(backend), v, progress=False).to_dict()
            else:
                out[v.name] = score(backend, v, flip=self.cfg.flip_val, progress=False).to_dict()
        self.net.train()
        return out

    def loader(self, total: int) -> torch.utils.data.DataLoader[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Batches from the current step to `total`, made by worker processes where there are cores to spare.

        Each batch is a list of (epoch, index) keys, so workers never need to be told the epoch."""
        workers = self.cfg.workers
        if workers < 0:
            workers = 0 if self.device.type == "cpu" else min(8, max(1, (os.cpu_count() or 1) - 1))
        if workers:
            # Workers warp one sample at a time: OpenCV's thread pool in each would only oversubscribe
            # the cores (15 workers made ~750 samples/s on a 16-core GPU host). Set before they fork:
            # changing it inside a forked worker hangs.
            cv2.setNumThreads(1)
        return torch.utils.data.DataLoader(
            self.samples, batch_sampler=EpochBatches(self.cfg, len(self.samples), self.step, total),
            num_workers=workers, pin_memory=self.device.type == "cuda")

    def run(self) -> Path:
        """Train to the end (or max_steps); returns the final checkpoint's path."""
        cfg = self.cfg
        total = cfg.epochs * self.steps_per_epoch
        if cfg.max_steps:
            total = min(total, cfg.max_steps)
        old = signal.signal(signal.SIGTERM, self._on_term)
        cv_threads = cv2.getNumThreads()  # loader() may lower it for its workers
        bar = tqdm(total=total, initial=self.step, desc=f"train {cfg.model}", unit="step", disable=None)
        try:
            self.net.train()
            self._steps(self.loader(total), total, bar)
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
        if self.step % self.steps_per_epoch:  # stopped mid-epoch by max_steps: validate anyway
            self._end_of_epoch(self.step // self.steps_per_epoch)
        final = self.checkpoint(self.last_path)
        self.write_log()
        return final

    def _on_term(self, signum: int, frame: FrameType | None) -> None:
        raise _Stop

    def _steps(self, batches: Iterable[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], total: int,
               bar: tqdm) -> None:
        cfg = self.cfg
        window = torch.zeros((), device=self.device)
        n_window, t_window = 0, time.perf_counter()
        for x, target, weight in batches:
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
            loss = centernet_loss(outputs, target, weight) if self.detector else masked_mse(outputs, target, weight)
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
                self._end_of_epoch(epoch)
                t_window += time.perf_counter() - t_val  # the speed is of training steps, not validation
            elif self.step % cfg.checkpoint_every == 0:
                self.checkpoint(self.last_path)
            if self.step >= total:
                return

    def _end_of_epoch(self, epoch: int) -> None:
        reports = self.validate()
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


def plot_curve(log: list[dict[str, Any]], path: Path, title: str) -> None:
    """Training loss and validation PCK against steps, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tr = [e for e in log if e["kind"] == "train"]
    va = [e for e in log if e["kind"] == "val"]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    if tr:
        ax.plot([e["step"] for e in tr], [e["loss"] for e in tr], color="tab:blue", lw=1)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (all stacks)", color="tab:blue")
    ax.set_yscale("log")
    if va:
        ax2 = ax.twinx()
        detector = "recall" in va[0]
        a, b = ("recall", "mean_iou") if detector else ("limbs", "all")
        ax2.plot([e["step"] for e in va], [100 * e[a] for e in va], "o-", color="tab:red", label=a)
        ax2.plot([e["step"] for e in va], [100 * e[b] for e in va], "s--", color="tab:orange",
                 label="mean IoU x 100" if detector else b)
        ax2.set_ylabel("validation top-1 recall@0.5 (%)" if detector else "validation PCK@0.2 (%)", color="tab:red")
        ax2.legend(loc="lower right")
    ax.set_title(f"{title} training")
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)
