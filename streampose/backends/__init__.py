"""Inference backends behind one interface (`Backend.infer(batch) -> heatmaps`).

`torch` is here now; `onnxruntime`, `openvino`, `tensorrt` and `auto` arrive with the engine work.
"""

from __future__ import annotations

import importlib.util

from streampose.backends.base import Backend, BackendInfo, BackendUnavailable
from streampose.checkpoint import Checkpoint

# backend name -> (module that must be importable, extra that provides it)
REQUIREMENTS: dict[str, tuple[str, str]] = {
    "torch": ("torch", "core install"),
    "onnxruntime": ("onnxruntime", "dev"),
    "openvino": ("openvino", "cpu"),
    "tensorrt": ("tensorrt", "tensorrt"),
}


def installed() -> dict[str, bool]:
    """Which backends' libraries are installed here (not whether the hardware is present)."""
    return {name: _has_module(mod) for name, (mod, _) in REQUIREMENTS.items()}


def _has_module(name: str) -> bool:
    # a bare namespace package (no origin) is what type stubs such as tensorrt-stubs leave behind
    spec = importlib.util.find_spec(name)
    return spec is not None and spec.origin is not None


def create(name: str, ckpt: Checkpoint, device: str = "cpu") -> Backend:
    """A backend by name for a loaded checkpoint."""
    if name == "torch":
        from streampose.backends.torch_backend import TorchBackend

        return TorchBackend(ckpt, device=device)
    if name in REQUIREMENTS:
        raise BackendUnavailable(f"backend {name!r} is not implemented in this version; use --backend torch")
    raise ValueError(f"unknown backend {name!r}; choose from {', '.join(REQUIREMENTS)}")


__all__ = ["Backend", "BackendInfo", "BackendUnavailable", "create", "installed"]
