"""The checkpoint format: one file that says everything about a model.

A checkpoint is a `torch.save` zip archive holding a plain dict (no pickled classes), so it loads
with `torch.load(..., weights_only=True)`:

    format          "streampose-checkpoint"
    format_version  1
    config          HourglassConfig as a dict
    joints          joint set name, e.g. "LSP14"
    normalization   Normalization as a dict
    metadata        free-form JSON-like dict: training data, steps, metrics, versions, ...
    state_dict      the network's tensors (fp32, or fp16 for shipped weights)

Training state (optimizer, schedule, RNG) is the trainer's business and goes in `extra`.
"""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streampose.joints import JointSet, get_joint_set
from streampose.model import HourglassConfig
from streampose.preprocess import Normalization

if TYPE_CHECKING:  # torch loads with the first checkpoint read or written, not with this module
    from torch import Tensor

    from streampose.model import StackedHourglass

FORMAT = "streampose-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A file that cannot be used as a streampose checkpoint; the message says why and what to do."""


@dataclass
class Checkpoint:
    config: HourglassConfig
    joints: JointSet
    normalization: Normalization = field(default_factory=Normalization)
    metadata: dict[str, Any] = field(default_factory=dict)
    state_dict: dict[str, Tensor] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.config.joints != len(self.joints):
            raise CheckpointError(
                f"model predicts {self.config.joints} joints but joint set {self.joints.name} has {len(self.joints)}; "
                f"train or convert a model for {self.joints.name}, or label it with the joint set it predicts"
            )

    def build(self) -> StackedHourglass:
        """The network with these weights, in eval mode, fp32."""
        from streampose.model import StackedHourglass

        net = StackedHourglass(self.config)
        if self.state_dict:
            sd = {k: v.float() if v.is_floating_point() else v for k, v in self.state_dict.items()}
            try:
                net.load_state_dict(sd)
            except RuntimeError as e:
                first = str(e).strip().splitlines()[0]
                raise CheckpointError(f"weights do not fit the stored model config ({first}); the file was edited or "
                                      "mixed up: use the checkpoint training wrote, or a shipped model") from None
        return net.eval()


FP16_MAX = 65504.0


def finite(t: Tensor) -> Tensor:
    """`t` in fp32 with the infinities of an older fp16 copy (a value beyond fp16's range) at fp16's largest."""
    return t.float().nan_to_num(posinf=FP16_MAX, neginf=-FP16_MAX)


def fp16_where_it_fits(t: Tensor) -> Tensor:
    """`t` in fp16 where all of it fits fp16's range, else kept in fp32 (a batch-norm running variance beyond
    65504: fp16 would make it inf, and clamping it to 65504 changes what the channel computes, by 1.8x for the
    variance of 2e5 that hg2-lite trained with low-res samples has; it cost 0.4 points on LSP 901-1000)."""
    t = finite(t)
    fits = t.numel() == 0 or float(t.abs().max()) <= FP16_MAX
    return t.half() if fits else t


def save(ckpt: Checkpoint, path: str | os.PathLike[str], half: bool = False) -> Path:
    """Write atomically (a crash never leaves a truncated file under the final name). `half` stores fp16 every
    tensor that fits fp16's range and fp32 the few that do not (`fp16_where_it_fits`)."""
    import torch

    path = Path(path)
    sd = {k: v.detach().cpu() for k, v in ckpt.state_dict.items()}
    if half:
        sd = {k: fp16_where_it_fits(v) if v.is_floating_point() else v for k, v in sd.items()}
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": ckpt.config.to_dict(),
        "joints": ckpt.joints.name,
        "normalization": ckpt.normalization.to_dict(),
        "metadata": _plain(ckpt.metadata),
        "state_dict": sd,
        "extra": ckpt.extra,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def _plain(metadata: dict[str, Any]) -> dict[str, Any]:
    """Metadata as plain JSON types, so that `weights_only` loading accepts it (str subclasses
    such as torch.__version__ would otherwise be pickled as their class)."""
    try:
        out: dict[str, Any] = json.loads(json.dumps(metadata))
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"checkpoint metadata must be JSON-serialisable: {e}") from None
    return out


def load(path: str | os.PathLike[str], joints: JointSet | str | None = None) -> Checkpoint:
    """Read a checkpoint safely (`weights_only=True`), optionally insisting on a joint set."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if not zipfile.is_zipfile(path):
        with path.open("rb") as f:
            head = f.read(4)
        hint = "it is truncated or corrupt" if head.startswith(b"PK") else "it is not a streampose checkpoint"
        raise CheckpointError(f"{path}: cannot read: {hint}; re-download it or retrain (streampose train)")
    import torch

    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(f"{path}: holds pickled Python objects, which streampose never loads "
                              "(they could run code); it is not a streampose checkpoint") from None
    except Exception as e:  # torch raises a handful of types for damaged archives
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: cannot read ({first}): it is truncated, corrupt or not a "
                              "streampose checkpoint") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(
            f"{path}: not a streampose checkpoint (a bare state_dict or another tool's file?); "
            "convert it with streampose.checkpoint.save"
        )
    version = payload.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {version} is not supported "
                              f"(this streampose reads version {FORMAT_VERSION}); upgrade streampose")
    try:
        ckpt = Checkpoint(
            config=HourglassConfig.from_dict(payload["config"]),
            joints=get_joint_set(payload["joints"]),
            normalization=Normalization.from_dict(payload["normalization"]),
            metadata=dict(payload.get("metadata", {})),
            state_dict=dict(payload["state_dict"]),
            extra=dict(payload.get("extra", {})),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: damaged streampose checkpoint ({e})") from None
    if joints is not None:
        check_joints(ckpt, joints, str(path))
    return ckpt


def check_joints(ckpt: Checkpoint, joints: JointSet | str, source: str) -> None:
    """Refuse a model whose joint set is not the one the caller needs."""
    want = get_joint_set(joints)
    if want.name != ckpt.joints.name:
        raise CheckpointError(
            f"{source}: this model predicts {ckpt.joints.name} joints but {want.name} was requested; "
            f"use a {want.name} model or ask for {ckpt.joints.name}"
        )
