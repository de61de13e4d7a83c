"""Checkpoint -> FP16 TensorRT plan, written for TensorRT 10 and 11 (docs/gpu-api-notes.md).

FP16 is requested the way each major version understands, and the result is checked rather than
trusted, so an 11.x build can never silently yield an FP32 engine:
- TensorRT 10: an FP32 ONNX graph plus `BuilderFlag.FP16` (weak typing); checked afterwards by
  the engine inspector reporting FP16 layers.
- TensorRT 11: the flag is gone and networks are strongly typed, so the ONNX graph itself is FP16
  (exported from the `.half()` model); checked afterwards by the engine's FP16 input/output tensors.
Every TensorRT call that signals failure by its return value is checked.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from engine.onnx_export import export_onnx
from engine.source import Source, new_meta
from streampose.backends import meta as m
from streampose.backends.base import BackendUnavailable
from streampose.backends.tensorrt_backend import INSTALL, gpu_identity

if TYPE_CHECKING:
    import tensorrt as trt

ROUTES = {10: "flag", 11: "graph"}
"""How FP16 is obtained per TensorRT major version: the builder flag, or an FP16 graph."""


class BuildError(RuntimeError):
    """TensorRT refused to parse or build; the message carries TensorRT's own messages."""


def fp16_route(version: str) -> str:
    """'flag' (TensorRT 10) or 'graph' (TensorRT 11 and later minors of 11), from a version string."""
    try:
        major = int(version.split(".")[0])
    except ValueError:
        raise BuildError(f"cannot read the TensorRT version {version!r}") from None
    if major not in ROUTES:
        raise BuildError(f"TensorRT {version} is not supported: streampose builds with TensorRT 10.x or 11.x")
    return ROUTES[major]


def profile_shapes(input_size: int, max_batch: int, opt_batch: int) -> tuple[tuple[int, ...], ...]:
    """(min, opt, max) input shapes of the one optimisation profile: batch 1 ... max_batch."""
    if not 1 <= opt_batch <= max_batch:
        raise ValueError(f"need 1 <= --opt-batch <= --max-batch, got {opt_batch} and {max_batch}")
    return tuple((b, 3, input_size, input_size) for b in (1, opt_batch, max_batch))


def build_tensorrt(src: Source, out: str | os.PathLike[str], max_batch: int = 32, opt_batch: int = 8,
                   workspace_gib: float = 2.0, timing_cache: str | os.PathLike[str] | None = None) -> Path:
    """Write an FP16 plan to `out` (.plan) with its metadata; reuses and updates `timing_cache`."""
    import torch

    if not torch.cuda.is_available():
        raise BackendUnavailable("building a TensorRT engine needs an NVIDIA GPU, and torch sees none")
    try:
        import tensorrt as trt
    except ImportError:
        raise BackendUnavailable(f"building TensorRT engines needs TensorRT and a GPU: {INSTALL}") from None
    out = Path(out)
    if out.suffix != ".plan":
        raise ValueError(f"{out}: a TensorRT engine file name must end in .plan")
    route = fp16_route(trt.__version__)
    shapes = profile_shapes(src.ckpt.config.input_size, max_batch, opt_batch)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode since 10.0 (the flag is gone in 11)
    parser = trt.OnnxParser(network, logger)
    with tempfile.TemporaryDirectory() as tmp:
        onnx = export_onnx(src, Path(tmp) / "model.onnx", max_batch=max_batch, opt_batch=opt_batch,
                           half=route == "graph")
        if not parser.parse_from_file(os.fspath(onnx)):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise BuildError(f"TensorRT could not parse the exported ONNX: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    if route == "flag":
        config.set_flag(trt.BuilderFlag.FP16)
        config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED  # so the check below can see layer types
    profile = builder.create_optimization_profile()
    profile.set_shape(network.get_input(0).name, *(trt.Dims(list(s)) for s in shapes))
    if config.add_optimization_profile(profile) < 0:
        raise BuildError(f"TensorRT rejected the optimisation profile {shapes}")
    cache_path = Path(timing_cache) if timing_cache else None
    old = cache_path.read_bytes() if cache_path and cache_path.is_file() else b""
    cache = config.create_timing_cache(old)
    if cache is None or not config.set_timing_cache(cache, ignore_mismatch=False):
        raise BuildError(f"TensorRT rejected the timing cache {cache_path}; delete it to start a new one")
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise BuildError("TensorRT failed to build the engine; see its messages above")
    data = bytes(plan)
    check_fp16(data, route, logger)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_name(out.name + ".tmp")
    tmp_out.write_bytes(data)
    os.replace(tmp_out, out)
    if cache_path:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        cache_path.write_bytes(bytes(cache.serialize()))
    meta = new_meta(src, "tensorrt", "fp16", max_batch, opt_batch, libs=("tensorrt",), device=gpu_identity())
    meta.extra["fp16_route"] = route
    m.write(out, meta)
    return out


def check_fp16(plan: bytes, route: str, logger: trt.ILogger) -> None:
    """Refuse an engine that is not FP16, whatever the builder said."""
    import tensorrt as trt

    engine = trt.Runtime(logger).deserialize_cuda_engine(plan)
    if engine is None:
        raise BuildError("TensorRT built a plan it cannot deserialize")
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    if route == "graph":
        dtypes = {n: engine.get_tensor_dtype(n) for n in names}
        if any(d != trt.DataType.HALF for d in dtypes.values()):
            raise BuildError(f"TensorRT built an engine with I/O types {dtypes}, not FP16; refusing it")
        return
    info = engine.create_engine_inspector().get_engine_information(trt.LayerInformationFormat.JSON)
    if "Half" not in info and "FP16" not in info:
        raise BuildError("TensorRT built no FP16 layers despite the FP16 flag; refusing an FP32 engine")


def build_torch_tensorrt(src: Source, out: str | os.PathLike[str], max_batch: int = 32, opt_batch: int = 8) -> Path:
    """The same engine for users who stay in PyTorch: torch-tensorrt's dynamo path, saved as an
    ExportedProgram (`.ep`). FP16 comes from the `.half()` model, which strong typing respects
    (`enabled_precisions` is an error in 2.10-2.12 and ignored on the dynamo path in 2.13)."""
    import torch

    if not torch.cuda.is_available():
        raise BackendUnavailable("torch-tensorrt needs an NVIDIA GPU, and torch sees none")
    try:
        import torch_tensorrt
    except ImportError:
        raise BackendUnavailable(f"torch-tensorrt is not installed: {INSTALL}") from None
    out = Path(out)
    if out.suffix != ".ep":
        raise ValueError(f"{out}: a torch-tensorrt program file name must end in .ep")
    mn, opt, mx = profile_shapes(src.ckpt.config.input_size, max_batch, opt_batch)
    net = src.ckpt.build().half().cuda()
    inp = torch_tensorrt.Input(min_shape=mn, opt_shape=opt, max_shape=mx, dtype=torch.float16, name="x")
    compiled = torch_tensorrt.compile(net, ir="dynamo", arg_inputs=[inp])
    out.parent.mkdir(parents=True, exist_ok=True)
    torch_tensorrt.save(compiled, os.fspath(out), arg_inputs=[inp])
    meta = new_meta(src, "torch-tensorrt", "fp16", max_batch, opt_batch, libs=("tensorrt", "torch-tensorrt"),
                    device=gpu_identity())
    m.write(out, meta)
    return out
