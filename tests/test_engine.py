"""Engines: ONNX export, OpenVINO fp32/bf16/int8, metadata and its checks, verify, the TensorRT logic
that runs without a GPU, and (marked, skipped without a GPU) real TensorRT builds."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import cut, one_line_error, sp

from engine import crops as cr
from engine.build import build, cache_key, verify
from engine.source import Source
from engine.tensorrt_build import BuildError, fp16_route, profile_shapes
from engine.verify import box_agreement, compare
from streampose.backends import BackendUnavailable, create
from streampose.backends import meta as m
from streampose.backends.openvino_backend import cpu_supports
from streampose.model import count_parameters
from streampose.preprocess import Normalization


@pytest.fixture(scope="module")
def check_crops(data: Path, src: Source) -> np.ndarray:
    if not (data / "lspet" / "joints.mat").is_file():
        pytest.skip("LSPET missing from the shared data")
    return cr.network_inputs(f"lsp:{data}/lspet@8501-8524", src.ckpt.config, src.ckpt.normalization)


def test_onnx_file_is_self_contained_with_dynamic_batch(onnx_engine: Path, src: Source) -> None:
    import onnx

    model = onnx.load(str(onnx_engine))
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [18]
    (inp,) = model.graph.input
    dims = inp.type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [3, 128, 128]
    assert sorted(p.name for p in onnx_engine.parent.iterdir()) == ["hg2-lite.onnx", "hg2-lite.onnx.json"]
    props = {p.key: p.value for p in model.metadata_props}
    assert Normalization.from_dict(json.loads(props["streampose.normalization"])) == src.ckpt.normalization
    assert props["streampose.joints"] == "LSP14" and props["streampose.source_sha256"] == src.sha256


def test_onnx_metadata_describes_the_engine(onnx_engine: Path, src: Source) -> None:
    meta = m.read(onnx_engine)
    assert (meta.target, meta.precision, meta.max_batch) == ("onnx", "fp32", 16)
    assert meta.config == src.ckpt.config and meta.joints.name == "LSP14"
    assert meta.source["sha256"] == src.sha256 == m.sha256(src.path)
    assert meta.versions["torch"] and meta.versions["onnx"]
    assert meta.files == {"hg2-lite.onnx": m.sha256(onnx_engine)}


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_onnx_parity_with_pytorch_on_real_crops(onnx_engine: Path, src: Source, check_crops: np.ndarray,
                                                backend: str) -> None:
    with create(backend, onnx_engine) as engine, create("torch", src.ckpt) as ref:
        for batch in (1, 3, 16):  # the batch dimension really is dynamic
            r = compare(engine, ref, check_crops[:16], batch=batch)
            assert r.max_abs < 1e-3 and r.agreement == 1.0, r


@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8"])
def test_openvino_engines_agree_with_pytorch(tmp_path: Path, data: Path, src: Source, check_crops: np.ndarray,
                                             precision: str) -> None:
    if not cpu_supports(precision):
        pytest.skip(f"this CPU has no native {precision}")
    out = build("hg2-lite", "openvino", precision, out=tmp_path / f"e-{precision}.xml", max_batch=8,
                calib_data=f"lsp:{data}/lspet@1-48", calib_images=48)
    meta = m.read(out)
    assert meta.precision == precision and set(meta.files) == {out.name, out.with_suffix(".bin").name}
    with create("auto", out) as engine, create("torch", src.ckpt) as ref:
        assert (engine.info.name, engine.info.precision) == ("openvino", precision)
        r = compare(engine, ref, check_crops, batch=8)
    # fp32 matches exactly; bf16 and int8 move some peaks (their PCK cost is measured: README)
    floor = {"fp32": 0.99, "bf16": 0.9, "int8": 0.6}[precision]
    assert r.agreement >= floor, r
    if precision == "int8":  # weights really are stored as int8: about a byte per parameter, not four
        assert out.with_suffix(".bin").stat().st_size < 1.5 * count_parameters(src.ckpt.build())


def test_tampered_or_foreign_engines_are_refused(tmp_path: Path, onnx_engine: Path) -> None:
    copy = tmp_path / "x.onnx"
    shutil.copy(onnx_engine, copy)
    with pytest.raises(m.EngineError, match="did not build it"):
        m.read(copy)
    shutil.copy(m.meta_path(onnx_engine), m.meta_path(copy))
    with pytest.raises(m.EngineError, match="sha256"):  # the recorded hash names the file
        m.read(copy)
    copy.write_bytes(onnx_engine.read_bytes())
    shutil.copy(m.meta_path(onnx_engine), tmp_path / "y.onnx.json")
    (tmp_path / "y.onnx").write_bytes(onnx_engine.read_bytes()[:1000])
    with pytest.raises(m.EngineError, match="sha256"):
        m.read(tmp_path / "y.onnx")
    plan = tmp_path / "z.plan"
    plan.write_bytes(onnx_engine.read_bytes())
    shutil.copy(m.meta_path(onnx_engine), m.meta_path(plan))
    with pytest.raises(m.EngineError, match=r"onnx engine but the file is \.plan"):
        m.read(plan)


def test_tensorrt_engines_from_another_version_or_gpu_say_rebuild(onnx_engine: Path) -> None:
    meta = m.read(onnx_engine)
    meta.versions["tensorrt"] = "10.13.0"
    meta.device = {"gpu": "NVIDIA H100", "compute_capability": "9.0"}
    same = {"gpu": "NVIDIA H100", "compute_capability": "9.0"}
    m.check_runtime(meta, "e.plan", {"tensorrt": "10.13.0"}, same)
    with pytest.raises(m.EngineError, match=r"built with tensorrt 10.13.0 but 11.1.0 .*rebuild"):
        m.check_runtime(meta, "e.plan", {"tensorrt": "11.1.0"}, same)
    with pytest.raises(m.EngineError, match="built for gpu NVIDIA H100 but this machine has NVIDIA L4; rebuild"):
        m.check_runtime(meta, "e.plan", {"tensorrt": "10.13.0"}, {"gpu": "NVIDIA L4", "compute_capability": "8.9"})


def test_fp16_route_follows_the_tensorrt_major_version() -> None:
    assert fp16_route("10.13.0.35") == "flag"
    assert fp16_route("10.16.1") == "flag"
    assert fp16_route("11.1.0") == "graph"
    for bad in ("8.6.1", "12.0", "unknown"):
        with pytest.raises(BuildError):
            fp16_route(bad)


def test_optimisation_profile_shapes() -> None:
    assert profile_shapes(256, 32, 8) == ((1, 3, 256, 256), (8, 3, 256, 256), (32, 3, 256, 256))
    for mx, opt in ((8, 16), (8, 0)):
        with pytest.raises(ValueError, match="opt-batch"):
            profile_shapes(256, mx, opt)


def test_cache_key_changes_with_anything_a_plan_depends_on(src: Source) -> None:
    gpu = {"gpu": "NVIDIA H100", "compute_capability": "9.0"}
    key = cache_key(src, "tensorrt", "fp16", 32, 8, gpu)
    assert key == cache_key(src, "tensorrt", "fp16", 32, 8, dict(gpu))
    assert key != cache_key(src, "tensorrt", "fp16", 16, 8, gpu)
    assert key != cache_key(src, "tensorrt", "fp16", 32, 8, {**gpu, "gpu": "NVIDIA L4"})
    assert key != cache_key(src, "openvino", "fp16", 32, 8, gpu)


def test_engine_cache_reuses_a_matching_engine(tmp_path: Path) -> None:
    first = build("hg2-lite", "onnx", cache=str(tmp_path), max_batch=4)
    stamp = first.stat().st_mtime_ns
    again = build("hg2-lite", "onnx", cache=str(tmp_path), max_batch=4)
    assert again == first and again.stat().st_mtime_ns == stamp
    other = build("hg2-lite", "onnx", cache=str(tmp_path), max_batch=8)
    assert other != first and len(list(tmp_path.glob("*.onnx"))) == 2


def test_backend_choice_errors_are_clear(onnx_engine: Path, src: Source) -> None:
    with pytest.raises(ValueError, match="streampose export"):
        create("onnxruntime", src.ckpt)
    with pytest.raises(ValueError, match="use --backend openvino or onnxruntime"):
        create("tensorrt", onnx_engine)
    with pytest.raises(ValueError, match="unknown backend"):
        create("cuda", src.ckpt)
    auto = create("auto", src.ckpt).info
    assert auto.name == "openvino" and auto.precision == ("bf16" if cpu_supports("bf16") else "fp32")


def test_openvino_side_by_side_jobs_give_each_batch_its_own_heatmaps(src: Source, check_crops: np.ndarray) -> None:
    """jobs=2: two streams run batches at once; five batches submitted before any is collected (so the
    infer requests are reused under them) each come back with their own heatmaps, as one at a time."""
    from streampose.api import infer_heatmaps

    batches = [np.ascontiguousarray(check_crops[i:i + 3]) for i in range(0, 15, 3)]
    with create("openvino", src.ckpt, jobs=1) as one, create("openvino", src.ckpt, jobs=2) as two:
        assert (one.info.jobs, two.info.jobs) == (1, 2)
        expected = [one.infer(b) for b in batches]
        jobs = [two.submit(b) for b in batches]
        for job, want in reversed(list(zip(jobs, expected, strict=True))):
            np.testing.assert_allclose(job(), want, atol=1e-4)
        assert jobs[0]() is jobs[0]()
        assert not np.allclose(expected[0], expected[1], atol=1e-4)  # different crops: a mix-up would show
        flipped = [infer_heatmaps(backend, batches[0], flip=True) for backend in (two, one)]
        np.testing.assert_allclose(*flipped, atol=1e-4)
    with pytest.raises(ValueError, match="jobs must be >= 0"):
        create("openvino", src.ckpt, jobs=-1)


def test_tensorrt_is_unavailable_without_a_gpu(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(BackendUnavailable, match="NVIDIA GPU"):
        build("hg2-lite", "tensorrt", out=tmp_path / "x.plan")


def test_cli_export_verify_and_their_errors(tmp_path: Path, data: Path) -> None:
    out = tmp_path / "m.onnx"
    r = sp("export", "hg2-lite", "-o", str(out), "--max-batch", "8", "--check-data", f"lsp:{data}/lspet@8501-8516")
    assert r.returncode == 0, r.stderr
    assert "keypoints within 0.5 px: 100.00%" in r.stdout
    r = sp("verify", str(out), "--data", f"lsp:{data}/lspet@8501-8516", "--json")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["ok"] and result["crops"] == 16 and result["agreement"] == 1.0
    assert m.read(out).extra["verify"]["agreement"] == 1.0
    r = sp("verify", str(out), "--data", f"lsp:{data}/lspet@8501-8508", "--threshold", "1.01")
    assert r.returncode == 2 and "FAIL" in r.stdout
    out.write_bytes(out.read_bytes()[:-10])
    assert "rebuild" in one_line_error(sp("verify", str(out)))
    plan = str(tmp_path / "a.plan")
    assert "NVIDIA GPU" in one_line_error(sp("build", "hg2-lite", "--target", "tensorrt", "-o", plan))
    assert "must end in .xml" in one_line_error(sp("build", "hg2-lite", "--target", "openvino", "-o", "x.plan"))


def test_a_detector_is_verified_by_its_top_boxes(data: Path) -> None:
    """A detector's engine agrees where its top box overlaps the reference's, not where the centre peak is within
    half a heatmap pixel (an int8 detector failed that while finding the same people)."""
    from streampose import models
    from streampose.checkpoint import load

    if not (data / "lspet" / "joints.mat").is_file():
        pytest.skip("LSPET missing from the shared data")
    ckpt = load(models.PRESETS[models.DETECTOR].weights(models.DETECTOR))
    frames = cr.network_inputs(f"lsp:{data}/lspet@8501-8508", ckpt.config, ckpt.normalization)
    with create("torch", ckpt) as det:
        maps = det.infer(frames)
    stride = ckpt.config.stride
    same = box_agreement(maps, maps.copy(), stride, 0.0, 0.0)
    assert same.boxes and same.agreement == 1.0 and same.joints == len(frames) and same.worst_px == 0.0
    nudged = maps.copy()
    nudged[:, 3] += 0.6  # every centre 0.6 heatmap px to the right: the same person's box
    assert box_agreement(nudged, maps, stride, 0.0, 0.0).agreement == 1.0
    elsewhere = maps.copy()
    elsewhere[:, 0] = np.roll(maps[:, 0], maps.shape[-1] // 2, axis=-1)  # the top peak half a frame away
    moved = box_agreement(elsewhere, maps, stride, 0.0, 0.0)
    assert moved.agreement < 0.5 and moved.worst_px > maps.shape[-1] / 4
    assert "top boxes at IoU >= 0.5" in moved.summary()


def test_verify_uses_the_source_checkpoint(onnx_engine: Path, data: Path) -> None:
    result, _, precision = verify(onnx_engine, data=f"lsp:{data}/lspet@8501-8504", record=False)
    assert result.crops == 4 and result.agreement == 1.0 and precision == "fp32"


@pytest.mark.tensorrt
def test_tensorrt_plan_builds_loads_and_agrees(tmp_path: Path, src: Source, check_crops: np.ndarray) -> None:
    plan = build("hg2-lite", "tensorrt", out=tmp_path / "e.plan", max_batch=8, opt_batch=4,
                 timing_cache=str(tmp_path / "timing.cache"))
    meta = m.read(plan)
    assert meta.precision == "fp16" and meta.device["gpu"] and meta.versions["tensorrt"]
    assert (tmp_path / "timing.cache").stat().st_size > 0
    with create("tensorrt", plan) as engine, create("torch", src.ckpt) as ref:
        assert engine.info.max_batch == 8
        for batch in (1, 5, 8):
            r = compare(engine, ref, check_crops, batch=batch)
            assert r.agreement >= 0.95, r


@pytest.mark.tensorrt
def test_torch_tensorrt_program_saves_and_reloads(tmp_path: Path, src: Source, check_crops: np.ndarray) -> None:
    ep = build("hg2-lite", "tensorrt", via="torch-tensorrt", out=tmp_path / "e.ep", max_batch=8)
    with create("tensorrt", ep) as engine, create("torch", src.ckpt) as ref:
        assert compare(engine, ref, check_crops, batch=3).agreement >= 0.95


@pytest.mark.cuda
def test_torch_backend_on_cuda_matches_cpu(src: Source, check_crops: np.ndarray) -> None:
    with create("torch", src.ckpt, device="cuda") as gpu, create("torch", src.ckpt) as cpu:
        r = compare(gpu, cpu, check_crops)
    assert r.agreement >= 0.99 and r.max_abs < 1e-2, r


def test_bench_measures_peak_and_backends(tmp_path: Path) -> None:
    from engine.bench import model_only, peak_probe, peaks_of

    probe = peak_probe(seconds=0.05, n=256)
    peaks = peaks_of(probe)
    assert peaks["fp32"] > 1 and all(v > 0 for impls in probe.values() for v in impls.values())
    rows = model_only(["hg2-lite"], [1, 2], cache=str(tmp_path), names=["torch", "onnxruntime"], peaks=peaks,
                      rounds=1)
    assert [(r.backend, r.batch) for r in rows] == [("torch", 1), ("torch", 2), ("onnxruntime", 1), ("onnxruntime", 2)]
    for r in rows:
        assert r.images_per_s > 0 and abs(r.images_per_s * r.ms_per_batch / 1000 - r.batch) < 1e-6
        assert r.share_of_peak == r.gflops / peaks["fp32"]


def test_bench_e2e_runs_every_frame_and_pairs_the_ratio(basketball_clip: Path, tmp_path: Path) -> None:
    from engine.bench import pipeline

    clip = cut(basketball_clip, tmp_path / "clip.mp4", 12)
    rows = pipeline(["hg2-lite"], str(clip), [1, 3], cache=str(tmp_path), names=["torch"], rounds=2)
    assert [(r.backend, r.batch) for r in rows] == [("torch", 1), ("torch", 3)]
    for r in rows:
        assert r.frames == 12 and r.dropped == 0 and not r.live and r.streams == 1
        assert r.fps > 0 and r.model_fps > 0 and abs(r.model_fps * r.model_ms / 1000 - r.batch) < 1e-6
        assert r.efficiency > 0  # its value depends on the machine's load; `paired_ratio` is checked below
        assert {"read", "preprocess", "infer", "sinks"} <= set(r.cpu_ms_per_frame)
        assert r.to_dict()["efficiency"] == r.efficiency


def test_bench_e2e_runs_pose_models_not_the_detector(basketball_clip: Path) -> None:
    """The e2e default is every shipped model: the person detector is not run as a pose model; alone, it is a
    one-line error."""
    r = sp("bench", "--e2e", str(basketball_clip), "--models", "person-det", "--backends", "torch", "--batches", "1",
           "--rounds", "1")
    assert "person-det is a person detector" in r.stdout
    assert "--e2e needs a pose model" in one_line_error(r)


def test_paired_ratio_takes_each_round_against_the_model_timed_around_it() -> None:
    from engine.bench import paired_ratio

    # round 1: 50 fps against a model at 10 ms then 30 ms per batch of 2 (mean 20 ms: 100 fps) -> 0.5;
    # round 2: 90 fps against 30 and 10 ms -> 0.9; round 3: 40 fps against 10 and 10 ms -> 0.2; median 0.5
    assert paired_ratio([50.0, 90.0, 40.0], [0.010, 0.030, 0.010, 0.010], batch=2) == pytest.approx(0.5)
    assert paired_ratio([90.0], [0.030, 0.010], batch=2) == pytest.approx(0.9)
    with pytest.raises(ValueError, match="one model timing more"):
        paired_ratio([50.0, 90.0], [0.01, 0.03], batch=2)


SIGNAL_STACK_CHECK = r"""
import ctypes, faulthandler, signal, subprocess, sys, threading
from streampose import checkpoint as ck, models
from streampose.backends import create
libc = ctypes.CDLL(None)
class Stack(ctypes.Structure):
    _fields_ = [("sp", ctypes.c_void_p), ("flags", ctypes.c_int), ("size", ctypes.c_size_t)]
def stack_mapped():
    s = Stack(); libc.sigaltstack(None, ctypes.byref(s))
    if not s.sp:
        return True
    for line in open("/proc/self/maps"):
        lo, hi = (int(a, 16) for a in line.split()[0].split("-"))
        if lo <= s.sp and s.sp + s.size <= hi:
            return True
    return False
faulthandler.enable()  # as pytest does: an alternate signal stack on the main thread
ckpt = ck.load(models.PRESETS["hg2-lite"].weights("hg2-lite"))
for jobs in (1, 0):
    held = [create("openvino", ckpt, jobs=jobs)]  # compiled on this thread
    t = threading.Thread(target=held.clear)  # freed on another, as a garbage collection may do
    t.start(); t.join()
signal.signal(signal.SIGCHLD, lambda *a: None)  # torch's DataLoader installs one like it
for _ in range(3):
    subprocess.run([sys.executable, "-c", "pass"], check=True)  # each exit signals this thread
print("signal stack mapped" if stack_mapped() else "signal stack freed")
"""


def test_openvino_freed_on_another_thread_keeps_the_signal_stack() -> None:
    """OpenVINO's CPU plugin installs an alternate signal stack on the thread that loads it and frees
    it with its Core. A backend freed on another thread once left the main thread's signal stack
    pointing at freed memory: the next signal with a Python handler crashed the test run (SIGSEGV)."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", SIGNAL_STACK_CHECK], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"exit {r.returncode}: {r.stderr[-2000:]}"
    assert r.stdout.strip().endswith("signal stack mapped"), r.stdout


def test_a_checkpoint_converted_before_starts_from_its_ir_without_torch(tmp_path: Path) -> None:
    """The second start of a checkpoint file on OpenVINO finds its IR by the file's hash: no checkpoint read, no
    torch import, the same heatmaps; a changed file (same path) is converted afresh."""
    import os
    import subprocess
    import sys

    from streampose import models
    from streampose.api import open_backend
    from streampose.checkpoint import load, save

    ckpt = tmp_path / "model.pt"
    shutil.copy(models.PRESETS["hg2-lite"].weights("hg2-lite"), ckpt)
    env = {**os.environ, "STREAMPOSE_CACHE": str(tmp_path / "cache")}
    probe = ("import sys, numpy as np; from streampose.api import open_backend; "
             f"b = open_backend({str(ckpt)!r}); x = np.random.default_rng(0).random((2, 3, 128, 128), np.float32); "
             "np.save(sys.argv[1], b.infer(x)); print(b.info.name, b.info.precision, 'torch' in sys.modules)")

    def start(out: str) -> tuple[str, np.ndarray]:
        r = subprocess.run([sys.executable, "-c", probe, str(tmp_path / out)], env=env, capture_output=True,
                           text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        return r.stdout.split("\n")[0], np.load(tmp_path / out)

    first, heat_first = start("first.npy")
    assert first.endswith("True")  # converted: the checkpoint was read with torch
    second, heat_second = start("second.npy")
    precision = "bf16" if cpu_supports("bf16") else "fp32"
    assert second == f"openvino {precision} False"
    np.testing.assert_array_equal(heat_second, heat_first)
    assert len(list((tmp_path / "cache" / "openvino" / "files").glob("*.json"))) == 1

    changed = load(ckpt)
    changed.state_dict = {k: v * 0.5 if v.is_floating_point() else v for k, v in changed.state_dict.items()}
    save(changed, ckpt)
    third, heat_third = start("third.npy")
    assert third.endswith("True") and not np.allclose(heat_third, heat_first)
    assert len(list((tmp_path / "cache" / "openvino" / "files").glob("*.json"))) == 2
    os.environ["STREAMPOSE_CACHE"], saved = str(tmp_path / "cache"), os.environ["STREAMPOSE_CACHE"]
    try:
        for entry in (tmp_path / "cache" / "openvino" / "files").glob("*.json"):
            entry.write_text("{damaged")
        with open_backend(ckpt) as b:  # a damaged index entry: converted again, not an error
            assert b.info.name == "openvino"
    finally:
        os.environ["STREAMPOSE_CACHE"] = saved


def test_auto_times_the_shipped_engines_once_and_keeps_the_faster(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """`auto` on the CPU times the default model's bf16 (or fp32) and its shipped int8 engine in turns, opens the
    faster, and records the choice: a later start opens the recorded one without timing anything. Another
    engine than the first must be clearly faster (`PREFER`), since the first is the more accurate."""
    from streampose import models
    from streampose.api import open_backend, shipped_int8
    from streampose.backends import fastest_cpu_precision
    from streampose.backends import openvino_backend as ovb

    if not cpu_supports("int8"):
        pytest.skip("this CPU has no native int8: nothing to choose between")
    monkeypatch.setenv("STREAMPOSE_CACHE", str(tmp_path))
    with open_backend(models.DEFAULT) as first:
        (record,) = (tmp_path / "openvino" / "choices").glob("*.json")
        chosen = json.loads(record.read_text())
        assert [e["precision"] for e in chosen["engines"]] == [fastest_cpu_precision(), "int8"]
        ms = [e["ms"] for e in chosen["engines"]]
        assert all(t > 0 for t in ms) and chosen["chosen"] == (1 if ms[1] * ovb.PREFER <= ms[0] else 0)
        assert first.info.precision == chosen["engines"][chosen["chosen"]]["precision"]

    def untimed(_: object) -> list[float]:
        raise AssertionError("timed again")

    monkeypatch.setattr(ovb, "_timed", untimed)
    with open_backend(models.DEFAULT) as second:
        assert second.info.precision == first.info.precision
    engines = [(ovb.ir_of_file(models.PRESETS[models.DEFAULT].weights(models.DEFAULT)), "fp32"),
               (shipped_int8(models.DEFAULT), "int8")]
    for times, want in (([10.0, 9.5], "fp32"), ([10.0, 8.0], "int8")):  # 1.05x: not enough; 1.25x: chosen
        monkeypatch.setattr(ovb, "_timed", lambda _, t=times: t)
        record.unlink()
        with ovb.fastest(engines, jobs=1) as b:
            assert b.info.precision == want
        (record,) = (tmp_path / "openvino" / "choices").glob("*.json")  # jobs is part of the key: a new record


def test_a_start_waits_for_a_conversion_under_way_and_uses_its_ir(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Processes that start on a fresh cache at once (`streampose batch --workers N` on a new machine) must not
    write the same IR over each other: before the lock, a worker read an IR another was rewriting and refused
    it as tampered. Here the test holds the conversion's lock, as a converting process would: a start waits for
    it (its wait shows in /proc/locks), then opens the IR that process left, without writing it again."""
    import fcntl
    import os
    import subprocess
    import sys
    import time

    from streampose import models
    from streampose.backends import openvino_backend as ovb
    from streampose.checkpoint import load

    weights = models.PRESETS[models.DETECTOR].weights(models.DETECTOR)
    monkeypatch.setenv("STREAMPOSE_CACHE", str(tmp_path / "first"))
    made = ovb.converted(load(weights))  # what the other process will have written
    folder = tmp_path / "second" / "openvino"
    folder.mkdir(parents=True)
    with open(folder / made.with_suffix(".lock").name, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        probe = f"from streampose.api import open_backend; print(open_backend({str(weights)!r}).info.name)"
        run = subprocess.Popen([sys.executable, "-c", probe], env={**os.environ, "STREAMPOSE_CACHE": str(
            tmp_path / "second")}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        inode, deadline = os.fstat(lock.fileno()).st_ino, time.monotonic() + 120
        while not any("->" in line and f":{inode} " in line for line in Path("/proc/locks").read_text().splitlines()):
            assert run.poll() is None and time.monotonic() < deadline, "the start did not wait for the lock"
            time.sleep(0.1)
        for f in [*m.engine_files(made), m.meta_path(made)]:
            shutil.copy(f, folder)
        before = {f.name: os.stat(f).st_ino for f in folder.iterdir()}
    out, err = run.communicate(timeout=300)
    assert (run.returncode, out.strip()) == (0, "openvino"), err
    assert {f.name: os.stat(f).st_ino for f in folder.iterdir() if f.name in before} == before  # not written again
    assert {f.name for f in folder.iterdir() if f.is_dir()} == {"files", "compiled"}  # no staging folder left
