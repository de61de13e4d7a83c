"""Checkpoint -> OpenVINO IR for the CPU: fp32, bf16 (a compile-time hint on CPUs that have it) or int8.

int8 is NNCF post-training quantisation calibrated on real person crops from the training split
(`engine.crops.CALIBRATE`); the IR then holds FakeQuantize nodes that the CPU plugin runs as
VNNI int8 convolutions. fp32 and bf16 engines share the same fp32 IR: bf16 is how OpenVINO is
asked to compute, recorded in the engine's metadata and applied when the backend compiles it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import numpy.typing as npt

from engine.onnx_export import export_onnx
from engine.source import Source, new_meta
from streampose.backends import meta as m
from streampose.backends.base import BackendUnavailable

PRECISIONS = ("fp32", "bf16", "int8")


def build_openvino(src: Source, out: str | os.PathLike[str], precision: str = "fp32", max_batch: int = 32,
                   opt_batch: int = 1, calibration: npt.NDArray[np.float32] | None = None) -> Path:
    """Write `out` (.xml + .bin) and its metadata. int8 needs `calibration` crops (N, 3, S, S)."""
    from streampose.backends.openvino_backend import cpu_supports, import_openvino

    ov = import_openvino()

    out = Path(out)
    if out.suffix != ".xml":
        raise ValueError(f"{out}: an OpenVINO engine file name must end in .xml")
    if precision not in PRECISIONS:
        raise ValueError(f"OpenVINO precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if not cpu_supports(precision):
        raise BackendUnavailable(f"this CPU has no native {precision}; build fp32 (or int8) instead")
    libs: tuple[str, ...] = ("openvino",)
    with tempfile.TemporaryDirectory() as tmp:
        onnx = export_onnx(src, Path(tmp) / "model.onnx", max_batch=max_batch, opt_batch=opt_batch)
        graph = ov.convert_model(os.fspath(onnx))
    if precision == "int8":
        if calibration is None or len(calibration) == 0:
            raise ValueError("int8 needs calibration crops (real people, from the training split)")
        graph = quantize(graph, calibration)
        libs = ("openvino", "nncf")
    out.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(graph, os.fspath(out), compress_to_fp16=False)
    meta = new_meta(src, "openvino", precision, max_batch, opt_batch, libs=libs, device={"cpu": _cpu_model()})
    if calibration is not None and precision == "int8":
        meta.extra["calibration_crops"] = len(calibration)
    m.write(out, meta)
    return out


def quantize(graph: object, crops: npt.NDArray[np.float32]) -> object:
    """NNCF post-training quantisation with one crop per calibration sample."""
    try:
        import nncf
    except ImportError:
        raise BackendUnavailable("int8 quantisation needs NNCF: pip install 'streampose[cpu]'") from None
    data = nncf.Dataset([crops[i:i + 1] for i in range(len(crops))])
    return nncf.quantize(graph, data, subset_size=len(crops), preset=nncf.QuantizationPreset.PERFORMANCE)


def _cpu_model() -> str:
    from streampose.info import cpu

    return str(cpu()["model"])
