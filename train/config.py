"""What a training run is asked to do (`TrainConfig`, the fields of `streampose train`), and the plain pieces
it is made from: the device, the optimizer, the learning rate of each epoch."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from streampose import models
from train.data import Augment

OPTIMIZERS = ("rmsprop", "adam", "sgd")
AUGMENTS = {"runtime": Augment(), "small": Augment.small(), "paper": Augment.paper()}


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
    """Detector sample-making processes (-1: none on CPU, where the model needs both cores; up to 8 beside a GPU).
    Pose batches are made on the training device and need none."""
    augment: str = "runtime"
    """Pose crops: `runtime` (scale 0.7-1.4, centre shifts of 15 %: crops as the detector and tracker make them)
    or `paper` (centred on the labels, scale 0.75-1.25)."""
    swap_after: int = -1
    """From this epoch, each sample's labels or their left/right mirror, whichever the model fits better by
    `swap_margin` (-1: never)."""
    swap_margin: float = 0.25
    """Mirrored labels are chosen when their loss is below (1 - margin) x the labels' own."""
    time_budget: float = 0.0
    """Seconds of training: the schedule (epochs, drops) shrinks to what fits, timed over the first steps
    (0: run the epochs given)."""
    val_every: int = 1
    """Validate every this many epochs (and after the last)."""
    average_from: int = -1
    """From this epoch, the weights at each epoch's end are averaged (SWA, Izmailov et al. 2018; batch-norm
    statistics averaged with them); validation and the checkpoint's weights are the average (-1: never)."""
    teacher: str = ""
    """A trained pose model (a shipped name or a checkpoint) whose heatmaps of each training crop the model also
    learns (`distill`; knowledge distillation as FPD does for hourglasses, Zhang et al. CVPR 2019): a teacher's
    maps are soft where crowd-sourced labels are noisy, and cover the joints the labels leave out."""
    distill: float = 0.5
    """With a `teacher`, the loss is (1 - distill) x the labels' + distill x the teacher's (FPD's 0.5)."""
    teacher_flip: bool = False
    """The teacher's maps are the flip test's (its maps of the crop and of the crop mirrored, averaged): a better
    teacher (`hg2` gains 2.2 points on LSPET with it) for a second teacher pass per batch."""

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.model not in models.PRESETS:
            raise ValueError(f"unknown model config {self.model!r}; choose from {', '.join(models.PRESETS)}")
        if self.augment not in AUGMENTS:
            raise ValueError(f"augment must be one of {', '.join(AUGMENTS)}, got {self.augment!r}")
        if self.val_every < 1:
            raise ValueError(f"val_every must be >= 1, got {self.val_every}")
        if self.average_from < -1:
            raise ValueError(f"average_from must be an epoch >= 0, or -1 for none; got {self.average_from}")
        if not 0.0 <= self.distill <= 1.0:
            raise ValueError(f"distill must be a weight in [0, 1], got {self.distill}")


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
