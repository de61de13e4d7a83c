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


SMOOTHING = 0.7
"""SmoothQuant's alpha for convolutions. The hourglass's residual stream is never normalised, so a few of its
channels reach ~30x the others (up to ~2,900 on real crops), and one int8 scale per tensor leaves the rest a few
steps; SmoothQuant divides such channels out of a convolution's input and into its weights (quantised per output
channel). Measured on hg2-lite, joints whose int8 peak stays within 1.5 heatmap px of fp32's on LSPET / LSP
crops: 94 / 94 % with NNCF's defaults, 96 / 97 % so (bf16: 99 / 99 %); PCK@0.2 on the LSP slice 79.7 -> 81.2 %
(fp32 82.0)."""


def quantize(graph: object, crops: npt.NDArray[np.float32]) -> object:
    """NNCF post-training quantisation with one crop per calibration sample: symmetric weights, asymmetric
    activations (the MIXED preset) and SmoothQuant.

    NNCF runs SmoothQuant only for its TRANSFORMER model type, which also leaves the inputs of additions,
    max-pools and scalings in float (108 quantisers instead of 181): the network alone runs 5-20 % slower
    than with the defaults (batch 1-8), a folder of images about 4 % slower, still 1.3x bf16's rate where int8
    is chosen. Those float additions are part of the gain (without SmoothQuant: 96 / 96 % of joints within
    1.5 px), SmoothQuant the rest on the LSP crops (97 %)."""
    try:
        import nncf
        from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, AdvancedSmoothQuantParameters
    except ImportError:
        raise BackendUnavailable("int8 quantisation needs NNCF: pip install 'streampose[cpu]'") from None
    data = nncf.Dataset([crops[i:i + 1] for i in range(len(crops))])
    smooth = AdvancedSmoothQuantParameters(convolution=SMOOTHING, matmul=-1)
    return nncf.quantize(graph, data, subset_size=len(crops), preset=nncf.QuantizationPreset.MIXED,
                         model_type=nncf.ModelType.TRANSFORMER,
                         advanced_parameters=AdvancedQuantizationParameters(smooth_quant_alphas=smooth))


def _cpu_model() -> str:
    from streampose.info import cpu

    return str(cpu()["model"])
