"""Engine metadata: the JSON written beside every engine file, and the checks made before loading one.

An engine (ONNX graph, OpenVINO IR, TensorRT plan) says nothing about joints, normalisation or where
its weights came from, and a TensorRT plan only runs on the TensorRT version and GPU that built it.
So `streampose build` writes `<engine>.json` beside it, and the backends refuse an engine

- with no metadata (streampose did not build it),
- whose files no longer match the sha256 recorded at build time (engines are code: only load what
  you built), or
- built for another TensorRT version or GPU (TensorRT plans are tied to both).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from streampose.joints import JointSet, get_joint_set
from streampose.model import HourglassConfig
from streampose.preprocess import Normalization

FORMAT = "streampose-engine"
FORMAT_VERSION = 1
TARGETS = ("onnx", "openvino", "tensorrt", "torch-tensorrt")
PRECISIONS = ("fp32", "fp16", "bf16", "int8")
SUFFIXES = {".onnx": "onnx", ".xml": "openvino", ".plan": "tensorrt", ".ep": "torch-tensorrt"}


class EngineError(ValueError):
    """An engine that cannot be used here; the message says why and how to rebuild it."""


@dataclass
class EngineMeta:
    target: str
    precision: str
    config: HourglassConfig
    joints: JointSet
    normalization: Normalization
    max_batch: int
    opt_batch: int
    source: dict[str, Any]
    """The checkpoint it was built from: name, path and sha256."""
    versions: dict[str, str | None]
    """streampose, torch and the builder libraries (onnx, openvino, tensorrt, ...)."""
    device: dict[str, Any] = field(default_factory=dict)
    """For TensorRT: gpu name and compute capability; for CPU engines: the CPU model."""
    files: dict[str, str] = field(default_factory=dict)
    """Each engine file's name (relative to the engine) and sha256."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Anything else worth keeping: parity results, calibration data, accuracy."""

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise EngineError(f"unknown engine target {self.target!r}; one of {', '.join(TARGETS)}")
        if self.precision not in PRECISIONS:
            raise EngineError(f"unknown precision {self.precision!r}; one of {', '.join(PRECISIONS)}")
        if not 1 <= self.opt_batch <= self.max_batch:
            raise EngineError(f"need 1 <= opt_batch <= max_batch, got {self.opt_batch} and {self.max_batch}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["config"] = self.config.to_dict()
        d["joints"] = self.joints.name
        d["normalization"] = self.normalization.to_dict()
        d["input_size"] = self.config.input_size  # repeated for people reading the file
        return {"format": FORMAT, "format_version": FORMAT_VERSION, **d}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EngineMeta:
        if d.get("format") != FORMAT:
            raise EngineError("not streampose engine metadata")
        if d.get("format_version") != FORMAT_VERSION:
            raise EngineError(f"engine metadata version {d.get('format_version')} is not supported "
                              f"(this streampose reads {FORMAT_VERSION}); rebuild the engine")
        try:
            return cls(
                target=d["target"], precision=d["precision"], config=HourglassConfig.from_dict(d["config"]),
                joints=get_joint_set(d["joints"]), normalization=Normalization.from_dict(d["normalization"]),
                max_batch=int(d["max_batch"]), opt_batch=int(d["opt_batch"]), source=dict(d["source"]),
                versions=dict(d["versions"]), device=dict(d.get("device", {})), files=dict(d.get("files", {})),
                extra=dict(d.get("extra", {})),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise EngineError(f"damaged engine metadata ({e}); rebuild the engine") from None


def meta_path(engine: str | os.PathLike[str]) -> Path:
    """`model.plan` -> `model.plan.json`."""
    p = Path(engine)
    return p.with_name(p.name + ".json")


def engine_files(engine: str | os.PathLike[str]) -> list[Path]:
    """The files an engine consists of: OpenVINO IR is an .xml with its .bin weights."""
    p = Path(engine)
    return [p, p.with_suffix(".bin")] if p.suffix == ".xml" else [p]


def sha256(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write(engine: str | os.PathLike[str], meta: EngineMeta) -> Path:
    """Record the engine's files with their hashes and write the metadata beside it (atomically)."""
    meta.files = {f.name: sha256(f) for f in engine_files(engine)}
    path = meta_path(engine)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(meta.to_dict(), indent=1))
    os.replace(tmp, path)
    return path


def read(engine: str | os.PathLike[str], verify_files: bool = True) -> EngineMeta:
    """The metadata of an engine this streampose built, after checking its files are unchanged."""
    engine = Path(engine)
    if not engine.is_file():
        raise EngineError(f"{engine}: no such engine file")
    mp = meta_path(engine)
    if not mp.is_file():
        raise EngineError(f"{engine}: no {mp.name} beside it, so streampose did not build it (engines are code: "
                          "only engines built by `streampose build` are loaded); build one from a checkpoint")
    try:
        meta = EngineMeta.from_dict(json.loads(mp.read_text()))
    except json.JSONDecodeError as e:
        raise EngineError(f"{mp}: damaged engine metadata ({e}); rebuild the engine") from None
    expected = SUFFIXES.get(engine.suffix)
    if expected != meta.target:
        raise EngineError(f"{engine}: metadata says a {meta.target} engine but the file is {engine.suffix}")
    if verify_files:
        for f in engine_files(engine):
            want = meta.files.get(f.name)
            if want is None or not f.is_file() or sha256(f) != want:
                raise EngineError(f"{f}: does not match the sha256 recorded when it was built (changed, truncated "
                                  "or replaced); rebuild it with `streampose build`")
    return meta


def check_input(meta: EngineMeta, engine: str | os.PathLike[str], dims: list[int | None]) -> None:
    """Refuse a graph whose input is not the (N, 3, S, S) its metadata promises (unknown dims pass):
    the runtime would feed it crops of the wrong size."""
    s = meta.config.input_size
    want = [None, 3, s, s]
    if len(dims) != 4 or any(d is not None and w is not None and d != w for d, w in zip(dims, want, strict=True)):
        shown = "x".join("?" if d is None else str(d) for d in dims)
        raise EngineError(f"{engine}: its graph takes input {shown} but its metadata says Nx3x{s}x{s}; it was "
                          "edited or mislabelled: export it again with `streampose export`")


def check_runtime(meta: EngineMeta, engine: str | os.PathLike[str], versions: dict[str, str | None],
                  device: dict[str, Any]) -> None:
    """Refuse a TensorRT engine built by another TensorRT version or for another GPU."""
    rebuild = f"rebuild it here: streampose build {meta.source.get('path') or 'CHECKPOINT'} --target {meta.target}"
    for lib in ("tensorrt", "torch_tensorrt"):
        built, here = meta.versions.get(lib), versions.get(lib)
        if built and here and built != here:
            raise EngineError(f"{engine}: built with {lib} {built} but {here} is installed (plans are tied to the "
                              f"version); {rebuild}")
    for key in ("gpu", "compute_capability"):
        built, here = meta.device.get(key), device.get(key)
        if built and here and built != here:
            raise EngineError(f"{engine}: built for {key} {built} but this machine has {here}; {rebuild}")
