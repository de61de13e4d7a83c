"""OpenVINO on the CPU: the fast CPU path (fp32, bf16 on CPUs that have it, int8 after calibration)."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from streampose.backends import meta as m
from streampose.backends.base import Backend, BackendInfo, BackendUnavailable, Job
from streampose.checkpoint import Checkpoint

# the precision OpenVINO computes in; int8 IR runs its quantised convolutions in int8 and the rest in f32
HINTS = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}


def import_openvino() -> Any:
    """The `openvino` module, imported without its telemetry.

    OpenVINO's Python package sends usage events to Google Analytics by default (opt-out), on `import openvino`
    and on every model conversion, each from a forked process that the interpreter joins at exit. A run should
    not report on its user, and a fork taken while other threads hold locks (the detector opening beside the pose
    model) can deadlock the child, which left `streampose run` hanging at exit after its error was printed. The
    model converter falls back to its own no-op stub when `openvino_telemetry` cannot be imported, so this process
    makes it unimportable before OpenVINO first loads (a program that imported OpenVINO earlier keeps its
    choice)."""
    if "openvino" not in sys.modules:
        sys.modules.setdefault("openvino_telemetry", None)  # type: ignore[arg-type]
    try:
        import openvino
    except ImportError:
        raise BackendUnavailable("openvino backend: OpenVINO is not installed; pip install 'streampose[cpu]'") from None
    return openvino


@cache
def core() -> Any:
    """The one OpenVINO Core of this process, kept until exit. Its CPU plugin, when loaded, installs an
    alternate signal stack (sized for AMX) on the loading thread and frees it when the Core goes; a Core
    freed on another thread, or out of order with another Core, leaves that thread's signal stack
    pointing at freed memory, and the next signal handled there (Python's SIGINT or SIGCHLD handlers use
    the alternate stack) crashes the process. One Core that is never freed cannot do that.

    Compiled models are cached on disk (OpenVINO's CACHE_DIR, keyed by OpenVINO on the graph, the device and
    the properties): a later start loads the pose model and the detector in 0.25 s instead of 0.57 s."""
    ov_core = import_openvino().Core()
    compiled = cache_dir() / "openvino" / "compiled"
    try:
        compiled.mkdir(parents=True, exist_ok=True)
    except OSError:  # a read-only home: compile every time
        return ov_core
    ov_core.set_property({"CACHE_DIR": os.fspath(compiled)})
    return ov_core


def cpu_supports(precision: str) -> bool:
    """Whether this CPU runs `precision` natively (OpenVINO emulates nothing: bf16 needs AVX512-BF16/AMX)."""
    caps = core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    return {"fp32": "FP32", "bf16": "BF16", "int8": "INT8"}[precision] in caps


def cache_dir() -> Path:
    """Where converted models are kept between runs ($STREAMPOSE_CACHE, default ~/.cache/streampose)."""
    return Path(os.environ.get("STREAMPOSE_CACHE", Path.home() / ".cache" / "streampose"))


_TRACING = threading.Lock()


def converted(model: Checkpoint) -> Path:
    """The checkpoint as OpenVINO IR, converted once (about half a minute) and then reused from the
    cache, keyed on the weights, the config and the OpenVINO version; checked like any engine.

    Several processes may start on a fresh cache at once (`streampose batch --workers N`): one converts, under a
    lock, into a folder of its own and moves the files into place, metadata last; the others wait for it and
    read its IR. A reader never sees half a file, and a conversion cut short leaves no metadata, so the next
    start converts again."""
    ov = import_openvino()
    h = hashlib.sha256(json.dumps([model.config.to_dict(), model.joints.name, ov.__version__]).encode())
    for k, v in sorted(model.state_dict.items()):
        h.update(k.encode())
        h.update(v.detach().float().contiguous().numpy().tobytes())
    key = h.hexdigest()
    path = cache_dir() / "openvino" / f"{model.metadata.get('name', 'model')}-{key[:16]}.xml"
    if m.meta_path(path).is_file():
        m.read(path)
        return path
    import fcntl

    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if this process dies
        if m.meta_path(path).is_file():  # another process converted it while this one waited
            m.read(path)
            return path
        s = model.config.input_size
        # OpenVINO traces with torch.jit, whose tracing state is global: two threads tracing at once (the runtime
        # opens the detector beside the pose model) corrupt each other's graphs
        with _TRACING, warnings.catch_warnings():  # torch.jit also warns of its own deprecation
            warnings.simplefilter("ignore", DeprecationWarning)
            graph = ov.convert_model(model.build(), example_input=torch.zeros(2, 3, s, s), input=[(-1, 3, s, s)])
        with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
            staged = Path(tmp) / path.name
            ov.save_model(graph, os.fspath(staged), compress_to_fp16=False)
            meta = m.EngineMeta(target="openvino", precision="fp32", config=model.config, joints=model.joints,
                                normalization=model.normalization, max_batch=64, opt_batch=1,
                                source={"name": model.metadata.get("name"), "weights_sha256": key},
                                versions={"openvino": ov.__version__})
            m.write(staged, meta)
            for f in [*m.engine_files(staged), m.meta_path(staged)]:
                os.replace(f, path.parent / f.name)
    return path


def ir_of_file(path: str | os.PathLike[str]) -> Path:
    """The IR of a checkpoint file, found by the file's hash once `converted`: a later start reads neither the
    checkpoint nor torch (importing torch is half of a 2-second start). The index holds IR names only; each IR is
    checked like any engine."""
    ov = import_openvino()
    h = hashlib.sha256(ov.__version__.encode())
    with open(path, "rb") as f:
        h.update(f.read())
    index = cache_dir() / "openvino" / "files" / f"{h.hexdigest()}.json"
    try:
        ir = index.parent.parent / str(json.loads(index.read_text())["ir"])
        if ir.is_file() and m.meta_path(ir).is_file():
            m.read(ir)
            return ir
    except (OSError, ValueError, KeyError, TypeError):
        pass  # not converted yet (or a damaged entry): convert
    from streampose.checkpoint import load

    ir = converted(load(path))
    try:
        index.parent.mkdir(parents=True, exist_ok=True)
        tmp = index.with_name(f".{index.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"ir": ir.name, "checkpoint": os.fspath(path)}))
        os.replace(tmp, index)
    except OSError:  # a read-only cache: the next start converts again
        pass
    return ir


class _Job:
    """One submitted batch on one infer request; its output is copied out once, by whoever asks first
    (the caller, or `submit` reusing the request)."""

    def __init__(self, request: Any, batch: npt.NDArray[np.float32]) -> None:
        self.request = request
        self.batch: npt.NDArray[np.float32] | None = batch  # the request reads it in place: keep it alive
        self.heat: npt.NDArray[np.float32] | None = None
        self.lock = threading.Lock()

    def __call__(self) -> npt.NDArray[np.float32]:
        with self.lock:
            if self.heat is None:
                self.request.wait()
                self.heat = np.array(self.request.get_output_tensor(0).data, dtype=np.float32, copy=True)
                self.batch = None
            return self.heat


class OpenVinoBackend(Backend):
    """Runs an OpenVINO IR or ONNX engine built by `streampose build`, or converts a checkpoint in memory.

    `jobs=1` runs one batch at a time on all cores (OpenVINO's LATENCY hint: the shortest wait for each
    batch); `jobs=0` lets OpenVINO split the cores into streams that run batches side by side (THROUGHPUT
    hint; 2 streams of 1 thread on 2 cores), `jobs=N` asks for N streams. Side by side, a core taken by
    another thread (video decoding) delays one batch while the other cores go on; with one batch on all
    cores, every core waits for the one that was taken."""

    def __init__(self, model: Checkpoint | str | os.PathLike[str], precision: str | None = None,
                 threads: int = 0, max_batch: int = 64, jobs: int = 1) -> None:
        ov_core = core()
        if isinstance(model, Checkpoint):
            if precision == "int8":
                raise ValueError("int8 needs calibration: streampose build CHECKPOINT --target openvino "
                                 "--precision int8")
            graph = ov_core.read_model(os.fspath(converted(model)))
            precision = precision or "fp32"
            config, joints, norm = model.config, model.joints, model.normalization
        else:
            self.meta = m.read(model)
            if self.meta.target not in ("openvino", "onnx"):
                raise m.EngineError(f"{model}: a {self.meta.target} engine; openvino runs .xml and .onnx files")
            graph = ov_core.read_model(os.fspath(model))
            m.check_input(self.meta, model, [d.get_length() if d.is_static else None
                                             for d in graph.inputs[0].get_partial_shape()])
            if precision and precision != self.meta.precision and self.meta.precision == "int8":
                raise ValueError(f"{model} is an int8 engine; it cannot run as {precision}")
            precision = precision or self.meta.precision
            config, joints, norm = self.meta.config, self.meta.joints, self.meta.normalization
            max_batch = self.meta.max_batch
        if precision not in HINTS:
            raise ValueError(f"openvino precision must be one of {', '.join(HINTS)}, got {precision!r}")
        if not cpu_supports(precision):
            raise BackendUnavailable(f"openvino backend: this CPU has no native {precision}; use fp32")
        if jobs < 0:
            raise ValueError(f"jobs must be >= 0 (0: as many as OpenVINO finds best), got {jobs}")
        props: dict[str, Any] = {"INFERENCE_PRECISION_HINT": HINTS[precision],
                                 "PERFORMANCE_HINT": "LATENCY" if jobs == 1 else "THROUGHPUT"}
        if jobs > 1:
            props["NUM_STREAMS"] = jobs
        if threads:
            props["INFERENCE_NUM_THREADS"] = threads
        self.compiled = ov_core.compile_model(graph, "CPU", props)
        n = 1 if jobs == 1 else int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        self.requests = [self.compiled.create_infer_request() for _ in range(n)]
        self._last: list[_Job | None] = [None] * n
        self._next = 0
        self._submitting = threading.Lock()
        self.info = BackendInfo(
            name="openvino", input_size=config.input_size, stride=config.stride, joints=joints,
            normalization=norm, max_batch=max_batch, precision=precision, device="cpu", jobs=n,
        )

    def infer(self, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        return self.submit(batch)()

    def close(self) -> None:
        """Wait for batches still running (a request must not outlive the input it reads in place)."""
        for request in self.requests:
            request.wait()
        self._last = [None] * len(self.requests)

    def submit(self, batch: npt.NDArray[np.float32]) -> Job:
        """Start the batch on the next infer request in turn, first collecting that request's previous
        batch (waiting for it if it still runs). Safe from several threads (the runtime's second looks submit
        from its collecting thread while its inference thread submits); the jobs may be called from any."""
        self.check_batch(batch)
        with self._submitting:
            k = self._next
            self._next = (k + 1) % len(self.requests)
            if (previous := self._last[k]) is not None:
                previous()
            job = _Job(self.requests[k], np.ascontiguousarray(batch, dtype=np.float32))
            # share_inputs: the request reads the array in place (no copy); the job holds it until done
            job.request.start_async({0: job.batch}, share_inputs=True)
            self._last[k] = job
        return job


CHOICE_BATCHES = (1, 3, 8, 2, 6, 4)
"""The batches timed when choosing an engine: sizes vary in the runtime (1-8 crops), and an engine fast at one
fixed size need not be fast across them (int8 on a Xeon with AMX: faster than bf16 in the model-only bench at
batch 4-8, 2.5x slower in the runtime)."""
PREFER = 1.1
"""How much faster than the first (preferred, most accurate) engine another must run to be chosen."""


def fastest(engines: Sequence[tuple[Path, str]], jobs: int = 1, threads: int = 0) -> OpenVinoBackend:
    """The fastest on this CPU of these engines (IR, precision; the first preferred), opened.

    Which one is fastest is a property of the CPU that no simple rule gives: the pose model in int8 runs 1.4x its
    bf16 speed in the runtime on an AMD EPYC (AVX512-VNNI and -BF16), and 2.5x slower than bf16 on a Xeon with AMX
    (README). So each engine that this CPU runs natively is timed once, in turns, on batches of the sizes the
    runtime sends (`CHOICE_BATCHES`), and the choice is kept in the cache, keyed on the CPU, OpenVINO, the
    engines' files and `jobs`: later starts open only the chosen one. Another engine than the first must be
    `PREFER` times faster."""
    usable = [(path, precision) for path, precision in engines if cpu_supports(precision)]
    if not usable:
        raise BackendUnavailable(f"openvino backend: this CPU runs none of {', '.join(p for _, p in engines)}")
    if len(usable) == 1:
        return OpenVinoBackend(usable[0][0], usable[0][1], threads=threads, jobs=jobs)
    cpu = str(core().get_property("CPU", "FULL_DEVICE_NAME"))  # a VM may name only the family ("AMD EPYC"): add
    caps = sorted(core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))  # what it computes, and the cores
    key = hashlib.sha256(json.dumps([cpu, caps, os.cpu_count(), import_openvino().__version__, jobs, threads,
                                     [[m.read(p, verify_files=False).files, prec] for p, prec in usable]]).encode())
    record = cache_dir() / "openvino" / "choices" / f"{key.hexdigest()[:32]}.json"
    try:
        path, precision = usable[int(json.loads(record.read_text())["chosen"])]
        return OpenVinoBackend(path, precision, threads=threads, jobs=jobs)
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        pass  # not chosen on this machine yet (or a damaged record): time them
    opened: list[OpenVinoBackend] = []
    try:
        for path, precision in usable:
            opened.append(OpenVinoBackend(path, precision, threads=threads, jobs=jobs))
        ms = _timed(opened)
    except BaseException:
        for backend in opened:
            backend.close()
        raise
    chosen = min(range(1, len(ms)), key=ms.__getitem__)
    chosen = chosen if ms[chosen] * PREFER <= ms[0] else 0
    for k, backend in enumerate(opened):
        if k != chosen:
            backend.close()
    try:
        record.parent.mkdir(parents=True, exist_ok=True)
        tmp = record.with_name(f".{record.name}.{os.getpid()}.tmp")
        timed = [{"engine": p.name, "precision": prec, "ms": round(t, 3)}
                 for (p, prec), t in zip(usable, ms, strict=True)]
        tmp.write_text(json.dumps({"chosen": chosen, "cpu": cpu, "jobs": jobs, "threads": threads,
                                   "batches": CHOICE_BATCHES, "engines": timed}))
        os.replace(tmp, record)
    except OSError:  # a read-only cache: the next start times them again
        pass
    return opened[chosen]


def _timed(backends: Sequence[OpenVinoBackend], rounds: int = 3) -> list[float]:
    """Each backend's best time (ms) for the batches of `CHOICE_BATCHES`, one after the other, taken in turns so
    that a machine busy with something else slows all of them alike; the first round warms up."""
    s = backends[0].info.input_size
    crops = np.random.default_rng(0).standard_normal((max(CHOICE_BATCHES), 3, s, s)).astype(np.float32)
    best = [float("inf")] * len(backends)
    for r in range(rounds + 1):
        for k, backend in enumerate(backends):
            t0 = time.perf_counter()
            for n in CHOICE_BATCHES:
                backend.infer(crops[:n])
            if r:
                best[k] = min(best[k], (time.perf_counter() - t0) * 1e3)
    return best
