"""TensorRT on an NVIDIA GPU: a serialized FP16 plan (or a torch-tensorrt program) built by `streampose build`.

Written for TensorRT 10 and 11 (see docs/gpu-api-notes.md): the named-tensor API only
(`set_input_shape`, `set_tensor_address`, `execute_async_v3`), on a dedicated CUDA stream, with
torch-allocated buffers sized for the profile's maximum batch and reused across calls. Every call
that reports failure by return value is checked.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from streampose.backends import meta as m
from streampose.backends.base import Backend, BackendInfo, BackendUnavailable

INSTALL = "pip install 'streampose[tensorrt]' on a machine with an NVIDIA GPU"


def gpu_identity(device: str = "cuda:0") -> dict[str, Any]:
    """What a TensorRT plan is tied to besides the TensorRT version: the GPU model and compute capability."""
    import torch

    major, minor = torch.cuda.get_device_capability(device)
    return {"gpu": torch.cuda.get_device_name(device), "compute_capability": f"{major}.{minor}"}


def runtime_versions() -> dict[str, str | None]:
    """Versions of the libraries a TensorRT engine depends on, as installed here."""
    import importlib.metadata

    out: dict[str, str | None] = {}
    for lib, dist in (("tensorrt", "tensorrt"), ("torch_tensorrt", "torch-tensorrt")):
        try:
            out[lib] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[lib] = None
    return out


def _require_cuda(device: str) -> None:
    import torch

    if not device.startswith("cuda"):
        raise BackendUnavailable(f"tensorrt backend runs on a CUDA device, not {device!r}")
    if not torch.cuda.is_available():
        raise BackendUnavailable("tensorrt backend: no CUDA GPU is visible to torch; use --backend openvino or torch")


def _check_engine(engine: str | os.PathLike[str], device: str) -> m.EngineMeta:
    meta = m.read(engine)
    m.check_runtime(meta, engine, runtime_versions(), gpu_identity(device))
    return meta


def _info(meta: m.EngineMeta, max_batch: int, device: str) -> BackendInfo:
    return BackendInfo(name="tensorrt", input_size=meta.config.input_size, stride=meta.config.stride,
                       joints=meta.joints, normalization=meta.normalization, max_batch=max_batch,
                       precision=meta.precision, device=device)


class TensorRTBackend(Backend):
    """Runs a `.plan` built by `streampose build --target tensorrt`."""

    def __init__(self, engine: str | os.PathLike[str], device: str = "cuda:0") -> None:
        _require_cuda(device)
        try:
            import tensorrt as trt
        except ImportError:
            raise BackendUnavailable(f"tensorrt backend: TensorRT is not installed; {INSTALL}") from None
        import torch

        self.meta = _check_engine(engine, device)
        if self.meta.target != "tensorrt":
            raise m.EngineError(f"{engine}: a {self.meta.target} engine, not a TensorRT plan")
        self.device = torch.device(device)
        torch.cuda.set_device(self.device)
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(Path(engine).read_bytes())
        if self.engine is None:
            raise m.EngineError(f"{engine}: TensorRT could not deserialize it (built by another TensorRT version "
                                "or for another GPU?); rebuild it with `streampose build`")
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or len(outputs) != 1:
            raise m.EngineError(f"{engine}: expected one input and one output tensor, found {inputs} and {outputs}")
        self.input_name, self.output_name = inputs[0], outputs[0]
        max_batch = int(self.engine.get_tensor_profile_shape(self.input_name, 0)[2][0])
        context = self.engine.create_execution_context()
        if context is None:
            raise RuntimeError(f"{engine}: TensorRT could not create an execution context (out of GPU memory?)")
        self.context = context
        dtypes = {trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16}
        in_dtype = dtypes[self.engine.get_tensor_dtype(self.input_name)]
        out_dtype = dtypes[self.engine.get_tensor_dtype(self.output_name)]
        cfg = self.meta.config
        # buffers for the largest batch, allocated once; a smaller batch uses their leading rows
        self.input = torch.empty((max_batch, 3, cfg.input_size, cfg.input_size), dtype=in_dtype, device=self.device)
        self.output = torch.empty((max_batch, cfg.outputs, cfg.heatmap_size, cfg.heatmap_size), dtype=out_dtype,
                                  device=self.device)
        for name, buf in ((self.input_name, self.input), (self.output_name, self.output)):
            if not self.context.set_tensor_address(name, buf.data_ptr()):
                raise RuntimeError(f"TensorRT refused the buffer address for tensor {name!r}")
        self.stream = torch.cuda.Stream(self.device)  # type: ignore[no-untyped-call]  # never the default stream (extra synchronisation)
        self.info = _info(self.meta, max_batch, str(self.device))

    def infer(self, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        import torch

        self.check_batch(batch)
        n = batch.shape[0]
        caller = torch.cuda.current_stream(self.device)
        self.input[:n].copy_(torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)))
        shape = tuple(self.input[:n].shape)
        if not self.context.set_input_shape(self.input_name, shape):
            raise RuntimeError(f"TensorRT rejected input shape {shape}")
        self.stream.wait_stream(caller)  # the input copy happens on the caller's stream
        with torch.cuda.stream(self.stream):
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise RuntimeError("TensorRT execute_async_v3 failed; see the TensorRT log above")
        caller.wait_stream(self.stream)
        return np.ascontiguousarray(self.output[:n].float().cpu().numpy())

    def close(self) -> None:
        for attr in ("context", "engine", "runtime", "input", "output"):
            self.__dict__.pop(attr, None)


class TorchTensorRTBackend(Backend):
    """Runs a program saved by `streampose build --target tensorrt --via torch-tensorrt` (`.ep`)."""

    def __init__(self, engine: str | os.PathLike[str], device: str = "cuda:0") -> None:
        _require_cuda(device)
        try:
            import torch_tensorrt
        except ImportError:
            raise BackendUnavailable(f"tensorrt backend: torch-tensorrt is not installed; {INSTALL}") from None
        import torch

        self.meta = _check_engine(engine, device)
        if self.meta.target != "torch-tensorrt":
            raise m.EngineError(f"{engine}: a {self.meta.target} engine, not a torch-tensorrt program")
        self.device = torch.device(device)
        self.module = torch_tensorrt.load(os.fspath(engine)).module()
        self.dtype = torch.float16 if self.meta.precision == "fp16" else torch.float32
        self.info = _info(self.meta, self.meta.max_batch, str(self.device))

    def infer(self, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        import torch

        self.check_batch(batch)
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device, self.dtype)
            out = self.module(x)
        return np.ascontiguousarray(out.float().cpu().numpy())
