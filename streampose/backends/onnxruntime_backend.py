"""ONNX Runtime: the portable way to run an exported ONNX graph (CPU, or CUDA where installed)."""

from __future__ import annotations

import os

import numpy as np
import numpy.typing as npt

from streampose.backends import meta as m
from streampose.backends.base import Backend, BackendInfo, BackendUnavailable


class OnnxRuntimeBackend(Backend):
    def __init__(self, engine: str | os.PathLike[str], device: str = "cpu", threads: int = 0) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise BackendUnavailable("onnxruntime backend: onnxruntime is not installed; "
                                     "pip install 'streampose[cpu]'") from None
        self.meta = m.read(engine)
        if self.meta.target != "onnx":
            raise m.EngineError(f"{engine}: a {self.meta.target} engine; onnxruntime runs .onnx files")
        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda"):
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise BackendUnavailable("onnxruntime backend: CUDA requested but this onnxruntime has no CUDA "
                                         "provider; pip install onnxruntime-gpu, or use device='cpu'")
            providers.insert(0, "CUDAExecutionProvider")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads  # 0: one per physical core
        self.session = ort.InferenceSession(os.fspath(engine), opts, providers=providers)
        inp = self.session.get_inputs()[0]
        m.check_input(self.meta, engine, [d if isinstance(d, int) else None for d in inp.shape])
        self.input_name = inp.name
        self.info = BackendInfo(
            name="onnxruntime", input_size=self.meta.config.input_size, stride=self.meta.config.stride,
            joints=self.meta.joints, normalization=self.meta.normalization, max_batch=self.meta.max_batch,
            precision=self.meta.precision, device=device,
        )

    def infer(self, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        self.check_batch(batch)
        dtype = np.float16 if self.meta.precision == "fp16" else np.float32
        out = self.session.run(None, {self.input_name: np.ascontiguousarray(batch, dtype=dtype)})[0]
        return np.ascontiguousarray(out, dtype=np.float32)
