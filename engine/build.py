"""One entry point for every engine: build (or reuse from a cache), then verify against PyTorch.

    build("hg2-lite", "openvino", "int8")          -> engines/hg2-lite-int8.xml
    build("hg2", "tensorrt", cache="~/.cache/sp")  -> reused while TensorRT, GPU and weights match
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from engine import crops as cr
from engine.source import Source, load_source, versions
from engine.verify import Agreement, compare
from streampose.backends import create
from streampose.backends import meta as m
from streampose.backends.base import Backend

TARGETS = {"onnx": ("fp32", "fp16"), "openvino": ("fp32", "bf16", "int8"), "tensorrt": ("fp16",)}
SUFFIX = {"onnx": ".onnx", "openvino": ".xml", "tensorrt": ".plan", "torch-tensorrt": ".ep"}
MIN_AGREEMENT = {"fp32": 0.99, "fp16": 0.95, "bf16": 0.95, "int8": 0.75}
"""Default keypoint agreement with PyTorch below which an engine is reported as failing."""


def default_path(name: str, target: str, precision: str, folder: str | os.PathLike[str] = "engines") -> Path:
    tag = "" if (target, precision) == ("onnx", "fp32") else f"-{precision}"
    return Path(folder) / f"{name}{tag}{SUFFIX[target]}"


def cache_key(src: Source, target: str, precision: str, max_batch: int, opt_batch: int,
              device: dict[str, Any]) -> str:
    """What an engine depends on: weights, precision, batch profile, builder versions and hardware.
    Equal keys mean a cached engine can be reused; anything else changing means a rebuild."""
    libs = {"tensorrt": ("tensorrt", "torch-tensorrt"), "openvino": ("openvino", "nncf"), "onnx": ("onnx",)}
    parts = {"source": src.sha256, "target": target, "precision": precision, "max_batch": max_batch,
             "opt_batch": opt_batch, "versions": versions(*libs.get(target, ())), "device": device}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def build(model: str, target: str, precision: str | None = None, out: str | os.PathLike[str] | None = None,
          max_batch: int = 32, opt_batch: int | None = None, via: str = "tensorrt", cache: str | None = None,
          calib_data: str | None = None, calib_images: int = 300, workspace_gib: float = 2.0,
          timing_cache: str | None = None) -> Path:
    """Build one engine from a model name or checkpoint; with `cache`, reuse a matching one."""
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; choose from {', '.join(TARGETS)}")
    precision = precision or TARGETS[target][0]
    if precision not in TARGETS[target]:
        raise ValueError(f"{target} engines are {' or '.join(TARGETS[target])}, not {precision}")
    opt_batch = opt_batch or (8 if target == "tensorrt" else 1)
    src = load_source(model)
    kind = "torch-tensorrt" if target == "tensorrt" and via == "torch-tensorrt" else target
    if cache:
        device: dict[str, Any] = {}
        if target == "tensorrt":
            from streampose.backends.tensorrt_backend import gpu_identity

            device = gpu_identity()
        key = cache_key(src, kind, precision, max_batch, opt_batch, device)
        path = Path(cache).expanduser() / f"{src.name}-{precision}-{key}{SUFFIX[kind]}"
        if path.is_file() and m.meta_path(path).is_file():
            m.read(path)  # still intact
            print(f"reusing cached engine {path}", file=sys.stderr)
            return path
    else:
        path = Path(out) if out else default_path(src.name, kind, precision)
    if path.suffix != SUFFIX[kind]:
        raise ValueError(f"{path}: a {kind} engine file name must end in {SUFFIX[kind]}")
    if target == "onnx":
        from engine.onnx_export import export_onnx

        return export_onnx(src, path, max_batch=max_batch, opt_batch=opt_batch, half=precision == "fp16")
    if target == "openvino":
        from engine.openvino_build import build_openvino

        calib = None
        if precision == "int8":
            spec = calib_data or cr.spec(cr.CALIBRATE)
            calib = cr.network_inputs(spec, src.ckpt.config, src.ckpt.normalization, calib_images)
            what = "whole images" if src.ckpt.config.head == "centernet" else "person crops"
            print(f"calibrating int8 on {len(calib)} {what} from {spec}", file=sys.stderr)
        return build_openvino(src, path, precision, max_batch=max_batch, opt_batch=opt_batch, calibration=calib)
    from engine.tensorrt_build import build_tensorrt, build_torch_tensorrt

    if kind == "torch-tensorrt":
        return build_torch_tensorrt(src, path, max_batch=max_batch, opt_batch=opt_batch)
    return build_tensorrt(src, path, max_batch=max_batch, opt_batch=opt_batch, workspace_gib=workspace_gib,
                          timing_cache=timing_cache)


def verify(engine: str | os.PathLike[str], checkpoint: str | None = None, data: str | None = None,
           limit: int = 0, backend: str = "auto", batch: int = 8, record: bool = True) -> tuple[Agreement, str, str]:
    """Compare an engine with the PyTorch checkpoint it came from on real person crops; with
    `record`, keep the result in the engine's metadata. Returns the agreement and the backend's
    name and precision."""
    meta = m.read(engine)
    checkpoint = checkpoint or meta.source.get("path")
    if not checkpoint or not Path(checkpoint).is_file():
        raise ValueError(f"{engine}: its source checkpoint {checkpoint!r} is not here; pass --checkpoint")
    ref_src = load_source(checkpoint)
    if ref_src.sha256 != meta.source.get("sha256"):
        print(f"warning: {checkpoint} is not the checkpoint {engine} was built from (sha256 differs)",
              file=sys.stderr)
    spec = data or cr.spec(cr.CHECK)
    x = cr.network_inputs(spec, meta.config, meta.normalization, limit)
    runner: Backend
    with create(backend, engine) as runner, create("torch", ref_src.ckpt) as reference:
        result = compare(runner, reference, x, batch=batch)
        name, precision = runner.info.name, runner.info.precision
    if record:
        meta.extra["verify"] = {**result.to_dict(), "data": spec, "backend": name, "precision": precision}
        m.write(engine, meta)
    return result, name, precision
