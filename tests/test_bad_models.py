"""Promise 6, bad models and engines: each is refused by the real `streampose run` process with one line
that names the problem and the fix, exit code 1, no traceback. (Checkpoint loading with weights_only,
pickles refused: test_checkpoint.py; TensorRT plans from another TensorRT version or GPU:
test_engine.py::test_tensorrt_engines_from_another_version_or_gpu_say_rebuild, since a plan only loads
where TensorRT is installed.)"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import one_line_error, sp

from engine.onnx_export import export_onnx
from engine.source import Source
from streampose import checkpoint as ck
from streampose.backends import meta as m
from streampose.joints import MPII16


def text_file(d: Path, src: Source, onnx: Path) -> tuple[Path, str]:
    (d / "model.pt").write_text("not a model")
    return d / "model.pt", "not a streampose checkpoint"


def image_file(d: Path, src: Source, onnx: Path) -> tuple[Path, str]:
    shutil.copy(Path(__file__).parents[1] / "docs" / "run-studio.png", d / "photo.pt")
    return d / "photo.pt", "not a streampose checkpoint"


def truncated(d: Path, src: Source, onnx: Path) -> tuple[Path, str]:
    (d / "cut.pt").write_bytes(src.path.read_bytes()[: src.path.stat().st_size // 2])
    return d / "cut.pt", "truncated or corrupt; re-download it or retrain"


def other_joint_set(d: Path, src: Source, onnx: Path) -> tuple[Path, str]:
    """A 14-joint network labelled as MPII16 (16 joints): the runtime would name joints wrongly."""
    import torch

    payload = torch.load(src.path, weights_only=True)
    payload["joints"] = MPII16.name
    torch.save(payload, d / "relabelled.pt")
    return d / "relabelled.pt", "train or convert a model for MPII16"


def weights_of_another_model(d: Path, src: Source, onnx: Path) -> tuple[Path, str]:
    cfg = dataclasses.replace(src.ckpt.config, stacks=src.ckpt.config.stacks + 1)
    ck.save(ck.Checkpoint(cfg, src.ckpt.joints, src.ckpt.normalization, state_dict=src.ckpt.state_dict), d / "mix.pt")
    return d / "mix.pt", "use the checkpoint training wrote"


def tampered_engine(d: Path, src: Source, onnx: Path) -> tuple[Path, str]:
    shutil.copy(m.meta_path(onnx), m.meta_path(d / "e.onnx"))
    (d / "e.onnx").write_bytes(onnx.read_bytes()[:-100])
    return d / "e.onnx", "rebuild it with `streampose build`"


def foreign_engine(d: Path, src: Source, onnx: Path) -> tuple[Path, str]:
    shutil.copy(onnx, d / "found.onnx")
    return d / "found.onnx", "only engines built by `streampose build` are loaded"


def wrong_input_shape(d: Path, src: Source, onnx: Path) -> tuple[Path, str]:
    """An ONNX graph for 64-pixel crops whose (re-hashed) metadata claims the model's own size."""
    small = dataclasses.replace(src.ckpt.config, input_size=64)
    other = Source(ck.Checkpoint(small, src.ckpt.joints, src.ckpt.normalization), "small", src.path, src.sha256)
    path = export_onnx(other, d / "small.onnx", max_batch=4, opt_batch=1)
    meta = m.read(path)
    meta.config = src.ckpt.config
    m.write(path, meta)
    return path, "export it again with `streampose export`"


CASES = [text_file, image_file, truncated, other_joint_set, weights_of_another_model, tampered_engine,
         foreign_engine, wrong_input_shape]


@pytest.mark.parametrize("make", CASES, ids=[c.__name__ for c in CASES])
def test_bad_model_is_one_line_naming_the_fix(make: Callable[[Path, Source, Path], tuple[Path, str]], tmp_path: Path,
                                              src: Source, onnx_engine: Path, messi: Path) -> None:
    model, fix = make(tmp_path, src, onnx_engine)
    backends = ["onnxruntime", "openvino"] if model.suffix == ".onnx" else ["torch"]
    for backend in backends:
        line = one_line_error(sp("run", str(messi), "--model", str(model), "--backend", backend))
        assert line.startswith("streampose run: error:") and fix in line, line
