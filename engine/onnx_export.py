"""Checkpoint -> ONNX: last-stack heatmaps, dynamic batch, explicit opset, weights inside the file.

Uses the torch.export-based exporter (`dynamo=True`, the default since torch 2.9) with a
`torch.export.Dim` for the batch and an example batch of 2, so the batch is never specialised to 1.
Normalisation is not folded into the graph: it is recorded in the ONNX metadata (`streampose.*`
keys) and in the engine's JSON, and applied by `streampose.preprocess`.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch

from engine.source import Source, new_meta
from streampose.backends import meta as m

OPSETS = range(17, 21)
DEFAULT_OPSET = 18


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """The exporter narrates every step on stdout and warns about things this model does not use."""
    log = logging.getLogger("torch.onnx")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        log.setLevel(level)


def export_onnx(src: Source, out: str | os.PathLike[str], opset: int = DEFAULT_OPSET, max_batch: int = 32,
                opt_batch: int = 8, half: bool = False) -> Path:
    """Write `out` (.onnx) and its metadata; `half=True` exports an FP16 graph (for TensorRT 11)."""
    import onnx

    out = Path(out)
    if out.suffix != ".onnx":
        raise ValueError(f"{out}: an ONNX file name must end in .onnx")
    if opset not in OPSETS:
        raise ValueError(f"opset {opset} unsupported: use {OPSETS.start}-{OPSETS.stop - 1} (TensorRT 10 parses <= 20)")
    meta = new_meta(src, "onnx", "fp16" if half else "fp32", max_batch, opt_batch, libs=("onnx",))
    net = src.ckpt.build()
    dtype = torch.float16 if half else torch.float32
    net = net.to(dtype)
    s = src.ckpt.config.input_size
    example = torch.zeros(2, 3, s, s, dtype=dtype)  # batch >= 2: a batch of 1 would be specialised
    batch = torch.export.Dim("batch", min=1, max=max_batch)
    with quiet():
        program = torch.onnx.export(net, (example,), None, input_names=["input"], output_names=["heatmaps"],
                                    dynamic_shapes={"x": {0: batch}}, opset_version=opset, external_data=False,
                                    dynamo=True)
    assert program is not None
    model = program.model_proto
    for key, value in {"streampose.joints": meta.joints.name,
                       "streampose.normalization": json.dumps(meta.normalization.to_dict()),
                       "streampose.config": json.dumps(meta.config.to_dict()),
                       "streampose.source_sha256": src.sha256}.items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    onnx.save_model(model, os.fspath(tmp))
    os.replace(tmp, out)
    m.write(out, meta)
    return out
