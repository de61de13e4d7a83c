"""The checkpoint an engine is built from, and the metadata every engine gets."""

from __future__ import annotations

import importlib.metadata
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import streampose
from streampose import models
from streampose.backends import meta as m
from streampose.checkpoint import Checkpoint, save


@dataclass(frozen=True)
class Source:
    ckpt: Checkpoint
    name: str
    path: Path
    sha256: str

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "path": str(self.path), "sha256": self.sha256}


def load_source(model: str | os.PathLike[str], untrained_dir: str | os.PathLike[str] | None = None) -> Source:
    """A shipped model name (`hg2-lite`) or a checkpoint path, with the hash that ties engines to it.

    With `untrained_dir`, a named model without installed weights gets fixed random ones (seed 0),
    saved there: enough for timing, meaningless for keypoints.
    """
    name = os.fspath(model)
    path = models.PRESETS[name].weights(name) if name in models.PRESETS else Path(name)
    if name in models.PRESETS and not path.is_file() and untrained_dir is not None:
        import torch

        path = Path(untrained_dir) / f"{name}-untrained.pt"
        if not path.is_file():
            torch.manual_seed(0)
            fresh = streampose.load_model(name, pretrained=False)
            fresh.state_dict = fresh.build().state_dict()
            save(fresh, path)
        name = os.fspath(path)
    ckpt = streampose.load_model(name)
    label = name if name in models.PRESETS else str(ckpt.metadata.get("name") or path.stem)
    return Source(ckpt, label, path, m.sha256(path))


def versions(*libs: str) -> dict[str, str | None]:
    """Installed versions of streampose, torch and the given builder libraries (distribution names)."""
    out: dict[str, str | None] = {}
    for lib in ("streampose", "torch", *libs):
        try:
            out[lib.replace("-", "_")] = importlib.metadata.version(lib)
        except importlib.metadata.PackageNotFoundError:
            out[lib.replace("-", "_")] = None
    return out


def new_meta(src: Source, target: str, precision: str, max_batch: int, opt_batch: int,
             libs: tuple[str, ...] = (), device: dict[str, Any] | None = None) -> m.EngineMeta:
    ck = src.ckpt
    return m.EngineMeta(target=target, precision=precision, config=ck.config, joints=ck.joints,
                        normalization=ck.normalization, max_batch=max_batch, opt_batch=opt_batch,
                        source=src.describe(), versions=versions(*libs), device=device or {})
