"""Benchmarks. Model-only: every available backend x precision x batch size, against this CPU's own
peak. Pipeline: a real clip end to end through the runtime, against the same backend alone.

The peak is measured here, once per run, by a short matrix-multiply probe per precision (torch:
fp32 and bf16 GEMM, int8 `_int_mm`), so "share of peak" is honest on any machine. Each figure is
the median of repeated timed rounds after warm-up.
"""

from __future__ import annotations

import itertools
import os
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from engine.build import build
from engine.source import load_source
from streampose.api import PoseEstimator
from streampose.backends import Backend, BackendUnavailable, Job, create, installed
from streampose.model import conv_macs
from streampose.publish import Publisher
from streampose.runtime import PoseStream, StreamStats
from streampose.sinks import PublishSink
from streampose.subscriber import Subscriber

# (backend, precision, engine target): what runs where
COMBOS = (("torch", "fp32", None), ("onnxruntime", "fp32", "onnx"), ("openvino", "fp32", "openvino"),
          ("openvino", "bf16", "openvino"), ("openvino", "int8", "openvino"), ("tensorrt", "fp16", "tensorrt"))
PEAK_OF = {"fp32": "fp32", "bf16": "bf16", "int8": "int8", "fp16": "fp16"}


@dataclass(frozen=True)
class Row:
    model: str
    backend: str
    precision: str
    batch: int
    jobs: int
    """Batches run side by side (1: one at a time on all cores)."""
    ms_per_batch: float
    """Wall time per batch delivered (with jobs > 1, each batch takes longer but several run at once)."""
    images_per_s: float
    gflops: float
    """Achieved GFLOP/s (2 x conv MACs per image)."""
    share_of_peak: float | None
    """Achieved / measured peak at this precision (None where no peak was measured)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _best_rate(fn: Callable[[], object], flops: float, seconds: float) -> float:
    fn()
    best, end = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return flops / best / 1e9


def peak_probe(seconds: float = 1.0, n: int = 2048) -> dict[str, dict[str, float]]:
    """GFLOP/s (GOP/s for int8) of a large GEMM per precision and implementation, best of repeated
    runs. Libraries differ a lot (torch's fp32 GEMM reaches half of ONNX Runtime's on some CPUs),
    so the peak of a precision is the best any installed implementation reaches."""
    import torch

    flops = 2.0 * n**3
    rng = np.random.default_rng(0)
    a, b = rng.random((n, n), dtype=np.float32), rng.random((n, n), dtype=np.float32)
    a8, b8 = rng.integers(-128, 127, (n, n), dtype=np.int8), rng.integers(-128, 127, (n, n), dtype=np.int8)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    probes: dict[str, dict[str, Callable[[], object]]] = {
        "fp32": {"torch": lambda: ta @ tb},
        "bf16": {"torch": (lambda x, y: lambda: x @ y)(ta.bfloat16(), tb.bfloat16())},
        "int8": {"torch": (lambda x, y: lambda: torch._int_mm(x, y))(torch.from_numpy(a8), torch.from_numpy(b8))},
    }
    if installed()["onnxruntime"]:
        probes["fp32"]["onnxruntime"] = _ort_gemm("MatMul", {"a": a, "b": b})
        probes["int8"]["onnxruntime"] = _ort_gemm("MatMulInteger", {"a": (a8.astype(np.int16) + 128).astype(np.uint8),
                                                                    "b": b8})
    out: dict[str, dict[str, float]] = {}
    for precision, impls in probes.items():
        for impl, fn in impls.items():
            try:
                out.setdefault(precision, {})[impl] = _best_rate(fn, flops, seconds)
            except RuntimeError:  # e.g. no int8 GEMM kernel in this torch build
                continue
    return out


def _ort_gemm(op: str, feeds: dict[str, np.ndarray]) -> Callable[[], object]:
    import onnx
    import onnxruntime as ort
    from onnx import helper

    types = {np.dtype(np.float32): onnx.TensorProto.FLOAT, np.dtype(np.uint8): onnx.TensorProto.UINT8,
             np.dtype(np.int8): onnx.TensorProto.INT8}
    n = feeds["a"].shape[0]
    out_type = onnx.TensorProto.INT32 if op == "MatMulInteger" else onnx.TensorProto.FLOAT
    graph = helper.make_graph(
        [helper.make_node(op, ["a", "b"], ["c"])], "gemm",
        [helper.make_tensor_value_info(k, types[v.dtype], [n, n]) for k, v in feeds.items()],
        [helper.make_tensor_value_info("c", out_type, [n, n])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return lambda: session.run(None, feeds)


def peaks_of(probe: dict[str, dict[str, float]]) -> dict[str, float]:
    return {precision: max(impls.values()) for precision, impls in probe.items() if impls}


def time_batches(backend: Backend, batch: int, rounds: int = 5, round_s: float = 0.5) -> float:
    """Median seconds per batch over `rounds` timed rounds of about `round_s` each, after warm-up, with
    `backend.info.jobs` batches kept in flight (as the runtime keeps them on files)."""
    s = backend.info.input_size
    x = np.random.default_rng(0).standard_normal((batch, 3, s, s), dtype=np.float32)
    inflight: deque[Job] = deque()

    def one() -> None:  # submit a batch; once the pipeline is full, wait for the oldest
        inflight.append(backend.submit(x))
        if len(inflight) >= backend.info.jobs:
            inflight.popleft()()

    for _ in range(3 + backend.info.jobs):
        one()
    per_round = []
    for _ in range(rounds):
        n, t0 = 0, time.perf_counter()
        while n == 0 or time.perf_counter() - t0 < round_s:
            one()
            n += 1
        per_round.append((time.perf_counter() - t0) / n)
    while inflight:
        inflight.popleft()()
    return statistics.median(per_round)


def backends_for(model: str, cache: str, names: list[str] | None = None, jobs: int = 1
                 ) -> Iterator[tuple[str, str, Backend]]:
    """Every (backend, precision) that works here for `model`, built into `cache` as needed, opened to run
    `jobs` batches side by side where it can (see `streampose.backends.create`)."""
    have = installed()
    src = load_source(model, untrained_dir=cache)
    for name, precision, target in COMBOS:
        if (names and name not in names) or not have[name]:
            continue
        try:
            if target is None:
                yield name, precision, create(name, src.ckpt, jobs=jobs)
                continue
            engine = build(str(src.path), target, precision, cache=cache, max_batch=8)
            yield name, precision, create(name, engine, jobs=jobs)
        except BackendUnavailable as e:
            print(f"skipping {name} {precision}: {e}")


def model_only(models: list[str], batches: list[int], cache: str = "engines/cache", names: list[str] | None = None,
               peaks: dict[str, float] | None = None, rounds: int = 5, jobs: Sequence[int] = (1,)) -> list[Row]:
    rows = []
    for model, j in itertools.product(models, jobs):
        flops = 2.0 * conv_macs(load_source(model, untrained_dir=cache).ckpt.config)
        for name, precision, backend in backends_for(model, cache, names, j):
            if j != 1 and backend.info.jobs == 1:  # runs one batch at a time: already timed with jobs 1
                backend.close()
                continue
            with backend:
                for batch in batches:
                    sec = time_batches(backend, batch, rounds=rounds)
                    gflops = flops * batch / sec / 1e9
                    peak = (peaks or {}).get(PEAK_OF[precision])
                    rows.append(Row(model, name, precision, batch, backend.info.jobs, 1000 * sec, batch / sec, gflops,
                                    gflops / peak if peak else None))
                    print(format_row(rows[-1]), flush=True)
    return rows


HEADER = (f"{'model':<10}{'backend':<13}{'prec':<6}{'batch':>5}{'jobs':>5}{'ms/batch':>10}{'img/s':>9}{'GFLOP/s':>9}"
          f"{'peak':>7}")


def format_row(r: Row) -> str:
    share = f"{100 * r.share_of_peak:.0f}%" if r.share_of_peak is not None else "-"
    return (f"{r.model:<10}{r.backend:<13}{r.precision:<6}{r.batch:>5}{r.jobs:>5}{r.ms_per_batch:>10.2f}"
            f"{r.images_per_s:>9.1f}{r.gflops:>9.1f}{share:>7}")


@dataclass(frozen=True)
class PipelineRow:
    """The full pipeline on a real clip against the same backend timed alone, measured alternately."""

    model: str
    backend: str
    precision: str
    batch: int
    jobs: int
    """Batches the backend ran side by side, in the pipeline and alone alike."""
    clip: str
    live: bool
    streams: int
    """Copies of the clip run side by side, each its own reader, batched together."""
    preview_fps: float
    """Previews published per second and stream (`run --preview`; 0: none)."""
    frames: int
    """Delivered, all streams together."""
    fps: float
    """End to end, all streams together: decode, crop, infer, decode heatmaps, publish over ZeroMQ to a subscriber."""
    model_fps: float
    """The backend alone at the same batch size, same run."""
    model_ms: float
    """The backend alone, ms per batch of this size."""
    latency_ms_p50: float
    latency_ms_p99: float
    """Capture (decode) to publish."""
    dropped: int
    cpu_ms_per_frame: dict[str, float]
    """Thread CPU time per stage (read, preprocess, infer, sinks) per delivered frame."""
    efficiency: float
    """End-to-end fps / model-only fps, paired per round (the model timed just before and just after each
    pipeline pass) and the median taken over rounds, so that the machine's drift hits both sides alike."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_pipeline(backend: Backend, clip: str, batch: int, live: bool = False, streams: int = 1, preview: float = 0.0
                 ) -> tuple[int, float, StreamStats, dict[str, float]]:
    """One pass of `clip` (`streams` copies at once) through the runtime, publishing to a real subscriber
    on loopback (with `preview` JPEGs a second per stream, which it also reads). Returns (frames of all streams,
    seconds, the first stream's stats, CPU seconds per stage)."""
    with Publisher("tcp://127.0.0.1:*", hwm=1000) as pub, \
            Subscriber(pub.endpoint, timeout=1.0, previews=bool(preview)) as sub:
        reader = threading.Thread(target=lambda: sum(1 for _ in sub), daemon=True)
        reader.start()
        # crop "track": the pipeline's own cost beside the model it runs (the detector would add a second model)
        stream = PoseStream([clip] * streams, estimator=PoseEstimator(backend=backend), crop="track", max_batch=batch,
                            live=live, sinks=[PublishSink(pub, preview_fps=preview or None)])
        t0, c0 = time.perf_counter(), time.thread_time()
        stats = stream.run()
        seconds, consumer_cpu = time.perf_counter() - t0, time.thread_time() - c0
        reader.join(timeout=5)
    frames = sum(s.delivered for s in stats.values())
    return frames, seconds, stats["s0"], {**stream.cpu_seconds, "sinks": consumer_cpu}


def paired_ratio(e2e_fps: Sequence[float], model_s: Sequence[float], batch: int) -> float:
    """End-to-end fps over model-only fps, per round against the model timed just before and just after that
    round (`model_s` has one more entry than `e2e_fps`: seconds per batch), the median over rounds."""
    if len(model_s) != len(e2e_fps) + 1:
        raise ValueError(f"need one model timing more than pipeline rounds, got {len(model_s)} and {len(e2e_fps)}")
    return statistics.median(fps * (before + after) / 2 / batch
                             for fps, before, after in zip(e2e_fps, model_s, model_s[1:], strict=False))


def pipeline(models: list[str], clip: str, batches: list[int], cache: str = "engines/cache",
             names: list[str] | None = None, rounds: int = 3, live: bool = False, streams: Sequence[int] = (1,),
             jobs: Sequence[int] | None = None, previews: Sequence[float] = (0.0,)) -> list[PipelineRow]:
    """End-to-end fps (or, `live`, latency at the clip's native rate) against model-only fps, alternating
    model-only and pipeline rounds so that machine noise hits both alike; medians are reported, and the
    ratio is paired per round (see `PipelineRow.efficiency`). `jobs` default: what the runtime picks (0, the
    backend's best, for files; 1 for live). `previews`: a row per preview rate (0: none)."""
    rows = []
    for model, j in itertools.product(models, jobs if jobs is not None else (1 if live else 0,)):
        for name, precision, backend in backends_for(model, cache, names, j):
            if jobs is not None and j != 1 and backend.info.jobs == 1:  # one at a time: same as jobs 1
                backend.close()
                continue
            with backend:
                for batch, n, preview in itertools.product(batches, streams, previews):
                    model_s, e2e_fps, runs = [time_batches(backend, batch, rounds=1, round_s=2.0)], [], []
                    for _ in range(rounds):
                        frames, seconds, stats, cpu = run_pipeline(backend, clip, batch, live, n, preview)
                        model_s.append(time_batches(backend, batch, rounds=1, round_s=2.0))
                        e2e_fps.append(frames / seconds)
                        runs.append((frames, stats, cpu))
                    frames, stats, cpu = runs[len(runs) // 2]
                    sec = statistics.median(model_s)
                    rows.append(PipelineRow(
                        model, name, precision, batch, backend.info.jobs, os.path.basename(clip), live, n, preview,
                        frames,
                        statistics.median(e2e_fps),
                        batch / sec, 1000 * sec, stats.latency_ms(50), stats.latency_ms(99), stats.dropped,
                        {k: round(1000 * v / max(frames, 1), 2) for k, v in cpu.items()},
                        paired_ratio(e2e_fps, model_s, batch)))
                    print(format_pipeline(rows[-1]), flush=True)
    return rows


PIPELINE_HEADER = (f"{'model':<10}{'backend':<13}{'prec':<6}{'batch':>5}{'jobs':>5}{'mode':>6}{'strm':>5}{'prev':>5}"
                   f"{'e2e fps':>9}"
                   f"{'model':>8}{'ratio':>7}{'lat p50':>9}{'p99':>7}{'model ms':>9}{'drop':>6}  CPU-ms/frame by stage")


def format_pipeline(r: PipelineRow) -> str:
    stages = " ".join(f"{k} {v:.1f}" for k, v in r.cpu_ms_per_frame.items())
    return (f"{r.model:<10}{r.backend:<13}{r.precision:<6}{r.batch:>5}{r.jobs:>5}{'live' if r.live else 'file':>6}"
            f"{r.streams:>5}{r.preview_fps:>5g}"
            f"{r.fps:>9.1f}{r.model_fps:>8.1f}{r.efficiency:>7.2f}{r.latency_ms_p50:>9.1f}{r.latency_ms_p99:>7.1f}"
            f"{r.model_ms:>9.1f}{r.dropped:>6}  {stages}")
