"""Inference backends behind one interface (`Backend.infer(batch) -> heatmaps`).

`create(name, model)` takes a loaded checkpoint or the path of an engine built by `streampose build`
(`.onnx`, `.xml` OpenVINO IR, `.plan` TensorRT, `.ep` torch-tensorrt). `auto` picks the fastest
backend that works here: TensorRT for a TensorRT engine, OpenVINO on the CPU (bf16 where the CPU
has it; for a shipped model by name, its shipped int8 engine where that is faster here:
`streampose.api.open_backend`), torch otherwise.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from streampose.backends.base import Backend, BackendInfo, BackendUnavailable, Job
from streampose.backends.meta import SUFFIXES, EngineError
from streampose.checkpoint import Checkpoint

# backend name -> (module that must be importable, extra that provides it)
REQUIREMENTS: dict[str, tuple[str, str]] = {
    "torch": ("torch", "core install"),
    "onnxruntime": ("onnxruntime", "cpu"),
    "openvino": ("openvino", "cpu"),
    "tensorrt": ("tensorrt", "tensorrt"),
}
NAMES = ("auto", *REQUIREMENTS)
# which backends can run which engine target, fastest first
RUNS: dict[str, tuple[str, ...]] = {"onnx": ("openvino", "onnxruntime"), "openvino": ("openvino",),
                                    "tensorrt": ("tensorrt",), "torch-tensorrt": ("tensorrt",)}

CHECKPOINTS = ("auto", "torch", "openvino")
"""Backends that run a checkpoint as it is; the others (onnxruntime, tensorrt) run engine files only."""

Model = Checkpoint | str | os.PathLike[str]


def installed() -> dict[str, bool]:
    """Which backends' libraries are installed here (not whether the hardware is present)."""
    return {name: _has_module(mod) for name, (mod, _) in REQUIREMENTS.items()}


def _has_module(name: str) -> bool:
    # a bare namespace package (no origin) is what type stubs such as tensorrt-stubs leave behind
    spec = importlib.util.find_spec(name)
    return spec is not None and spec.origin is not None


def is_engine(path: str | os.PathLike[str]) -> bool:
    return Path(path).suffix in SUFFIXES


def create(name: str, model: Model, device: str = "cpu", precision: str | None = None, jobs: int = 1,
           threads: int = 0) -> Backend:
    """A backend by name for a checkpoint or an engine file; `precision` applies where the backend has a choice.
    `jobs`: batches run side by side where the backend can (OpenVINO; 0: as many as it finds best), which
    gives throughput on files at the cost of each batch's latency; the others run one at a time. `threads`:
    CPU threads for OpenVINO and ONNX Runtime (0: every core), so that several engines can share a machine
    (`streampose batch` workers) without each taking all of it."""
    if name not in NAMES:
        raise ValueError(f"unknown backend {name!r}; choose from {', '.join(NAMES)}")
    if jobs < 0:
        raise ValueError(f"jobs must be >= 0 (0: as many as the backend finds best), got {jobs}")
    if not isinstance(model, Checkpoint) and not is_engine(model):
        raise EngineError(f"{model}: not an engine ({', '.join(SUFFIXES)}); load checkpoints with load_model")
    if name == "auto":
        return _auto(model, device, precision, jobs, threads)
    if not isinstance(model, Checkpoint):
        target = SUFFIXES[Path(model).suffix]
        if name not in RUNS[target]:
            raise ValueError(f"{model} is a {target} engine, which the {name} backend cannot run; "
                             f"use --backend {' or '.join(RUNS[target])}")
    if not installed()[name]:
        mod, extra = REQUIREMENTS[name]
        raise BackendUnavailable(f"backend {name!r} needs {mod}, which is not installed; "
                                 f"pip install 'streampose[{extra}]'")
    if name == "torch":
        if not isinstance(model, Checkpoint):
            raise ValueError("the torch backend runs checkpoints, not engines")
        if precision not in (None, "fp32"):
            raise ValueError(f"the torch backend runs fp32, not {precision}")
        from streampose.backends.torch_backend import TorchBackend

        return TorchBackend(model, device=device)
    if name == "openvino":
        from streampose.backends.openvino_backend import OpenVinoBackend

        return OpenVinoBackend(model, precision=precision, jobs=jobs, threads=threads)
    if isinstance(model, Checkpoint):  # not in CHECKPOINTS
        build = "streampose export MODEL" if name == "onnxruntime" else "streampose build MODEL --target tensorrt"
        raise ValueError(f"the {name} backend runs an engine file, not a checkpoint; make one with `{build}`")
    if name == "onnxruntime":
        from streampose.backends.onnxruntime_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend(model, device=device, threads=threads)
    from streampose.backends.tensorrt_backend import TensorRTBackend, TorchTensorRTBackend

    dev = device if device.startswith("cuda") else "cuda:0"
    return TorchTensorRTBackend(model, dev) if Path(model).suffix == ".ep" else TensorRTBackend(model, dev)


def _auto(model: Model, device: str, precision: str | None, jobs: int, threads: int) -> Backend:
    order: tuple[str, ...]
    if isinstance(model, Checkpoint):
        order = ("torch",) if device.startswith("cuda") else ("openvino", "torch")
    else:
        order = RUNS[SUFFIXES[Path(model).suffix]]
    reasons: list[str] = []
    for name in order:
        try:
            if name == "openvino" and isinstance(model, Checkpoint) and precision is None:
                return create(name, model, precision=fastest_cpu_precision(), jobs=jobs, threads=threads)
            return create(name, model, device=device, precision=precision, jobs=jobs, threads=threads)
        except BackendUnavailable as e:
            reasons.append(str(e))
    raise BackendUnavailable("no backend can run this model here: " + "; ".join(reasons))


def fastest_cpu_precision() -> str:
    """bf16 where the CPU computes it natively (about 1.5-2x fp32, no measurable PCK cost: README), else fp32."""
    from streampose.backends.openvino_backend import cpu_supports

    return "bf16" if cpu_supports("bf16") else "fp32"


__all__ = ["CHECKPOINTS", "NAMES", "Backend", "BackendInfo", "BackendUnavailable", "EngineError", "Job", "create",
           "fastest_cpu_precision", "installed", "is_engine"]
