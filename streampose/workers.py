"""Where `streampose batch` runs its inputs: worker processes on this machine, or actors on a Ray cluster.

Each worker holds one engine (the pose model and, where the crop needs it, the person detector), loaded once
and used for input after input, with its share of the CPU threads (or one GPU). Both pools have the same
shape: `submit` an input to a free slot, `poll` for what came back; a worker that dies mid-input comes back
as `Lost` and is replaced, and the driver (`streampose.batch`) decides whether to run the input again.

Only plain data crosses between driver and workers: the settings and jobs as dicts of strings and numbers,
progress and results as dicts. An input's outputs are written by its worker, to temporary names renamed when
complete, so a worker killed mid-input leaves no output that looks finished.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import multiprocessing as mp
import os
import queue
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streampose import models
from streampose.results import Result, Sink, StreamStats

if TYPE_CHECKING:
    from streampose.api import PoseEstimator
    from streampose.detector import PersonDetector

REPORT_EVERY_S = 0.25
"""How often a worker tells the driver how far it got in its input."""
RESTART_WAIT_S = 120.0
"""How long a Ray worker that died may take to come back (process, engine) before the batch gives up."""
PART = ".part"
"""Outputs are written as `.NAME.part.SUFFIX` in the output folder and renamed to `NAME.SUFFIX` when complete."""


class BatchError(ValueError):
    """A batch that cannot run as asked (bad input, output folder, cluster); one line, exit code 1."""


@dataclass(frozen=True)
class Settings:
    """What every worker needs to pose an input and write its outputs; plain data, so that it travels."""

    out: str
    fmt: str = "jsonl"
    save_video: bool = False
    model: str = models.DEFAULT
    backend: str = "auto"
    device: str = "cpu"
    crop: str = "auto"
    people: int = 1
    detector: str = models.DETECTOR
    max_batch: int = 4
    threads: int = 0
    """CPU threads of each worker's engine (0: every core)."""


@dataclass(frozen=True)
class Job:
    """One input: its output name, its path, and which attempt this is (a lost worker's input runs again)."""

    name: str
    path: str
    attempt: int = 1


@dataclass(frozen=True)
class Lost:
    """The worker died (killed, out of memory, a crash in native code) before it finished the input."""

    reason: str


Outcome = dict[str, Any] | Lost
Report = Callable[[dict[str, Any]], None]


def outputs(settings: Settings, name: str) -> list[str]:
    """The files an input gives, by name in the output folder: keypoints, and the drawn video if asked."""
    return [f"{name}.{settings.fmt}"] + ([f"{name}.mp4"] if settings.save_video else [])


def part_name(final: str) -> str:
    """The temporary name an output is written under: hidden, with its suffix kept (writers check it)."""
    stem, dot, suffix = final.rpartition(".")
    return f".{stem}{PART}{dot}{suffix}"


class Worker:
    """One engine, many inputs: poses an input into its output files, under temporary names renamed at the end."""

    def __init__(self, settings: Settings, report: Report) -> None:
        self.settings, self.report = settings, report
        self.where = f"{socket.gethostname()}:{os.getpid()}"
        self._engine: tuple[PoseEstimator, PersonDetector | None] | None = None

    def _open(self) -> tuple[PoseEstimator, PersonDetector | None]:
        """The pose estimator and detector, loaded on the first input (a bad model fails that input, as fatal)."""
        if self._engine is None:
            import cv2

            from streampose.api import PoseEstimator
            from streampose.crop import parse_crop
            from streampose.detector import open_detector

            s = self.settings
            if s.threads:
                cv2.setNumThreads(s.threads)
            estimator = PoseEstimator(s.model, backend=s.backend, device=s.device, jobs=0, threads=s.threads)
            if s.threads and "torch" in sys.modules:  # loaded for a torch backend (an engine's run never loads it)
                sys.modules["torch"].set_num_threads(s.threads)
            try:
                detector = (open_detector(s.detector, backend=s.backend, device=s.device, threads=s.threads)
                            if parse_crop(s.crop).needs_detector else None)
            except BaseException:
                estimator.close()
                raise
            self._engine = estimator, detector
        return self._engine

    def process(self, job: Job) -> dict[str, Any]:
        """Pose every frame of the input and rename its outputs into place; a dict for the manifest."""
        from streampose.runtime import PoseStream
        from streampose.sinks import KeypointSink, VideoSink
        from streampose.sources import SourceError

        started = time.monotonic()
        result: dict[str, Any] = {"name": job.name, "attempt": job.attempt, "worker": self.where}
        try:
            estimator, detector = self._open()
        except (ValueError, OSError, RuntimeError) as e:  # a bad model or backend: the same for every input,
            return {**result, "status": "failed", "fatal": True, "error": str(e)}  # so the driver stops the batch
        except Exception as e:
            return {**result, "status": "failed", "fatal": True, "error": _why(e)}
        out = Path(self.settings.out)
        finals = outputs(self.settings, job.name)
        parts = [out / part_name(f) for f in finals]
        s = self.settings
        sinks: list[Sink] = []
        try:
            sinks.append(KeypointSink(parts[0]))
            if s.save_video:
                sinks.append(VideoSink(parts[1]))
            sinks.append(_Progress(job, self.where, self.report))
            stream = PoseStream([job.path], estimator=estimator, crop=s.crop, people=s.people,
                                detector=detector if detector is not None else s.detector, max_batch=s.max_batch,
                                names=[job.name], reconnect=None, sinks=sinks)
            stats = stream.run()[job.name]
        except (SourceError, OSError, ValueError) as e:
            return {**result, **_failed(sinks, parts, str(e), started)}
        except Exception as e:  # one input's surprise must not end the batch
            return {**result, **_failed(sinks, parts, _why(e), started)}
        if stats.error or not stats.delivered:
            return {**result, **_failed(sinks, parts, stats.error or f"{job.path}: no frames could be read", started)}
        for part, final in reversed(list(zip(parts, finals, strict=True))):  # keypoints last: they mark it done
            os.replace(part, out / final)
        return {**result, "status": "done", "frames": stats.delivered, "seconds": round(time.monotonic() - started, 3),
                "damaged": stats.damaged, "skipped": sum(p.skipped for p in stats.problems), "error": None}

    def close(self) -> None:
        if self._engine is not None:
            estimator, detector = self._engine
            if detector is not None:
                detector.close()
            estimator.close()
            self._engine = None


def _failed(sinks: list[Sink], parts: list[Path], error: str, started: float) -> dict[str, Any]:
    """Close what was opened (the runtime closes its sinks, but not when it could not start) and drop the parts."""
    for sink in sinks:
        sink.close()
    for part in parts:
        part.unlink(missing_ok=True)
    return {"status": "failed", "error": error, "seconds": round(time.monotonic() - started, 3)}


def _why(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"


class _Progress(Sink):
    """Tells the driver how many frames of the input are done, a few times a second and at the end."""

    def __init__(self, job: Job, where: str, report: Report) -> None:
        self.job, self.where, self.report = job, where, report
        self.frames, self._next = 0, 0.0

    def pose(self, result: Result, stats: StreamStats) -> None:
        self.frames += 1
        if time.monotonic() >= self._next:
            self._send()

    def close(self) -> None:
        self._send()

    def _send(self) -> None:
        self._next = time.monotonic() + REPORT_EVERY_S
        self.report({"name": self.job.name, "attempt": self.job.attempt, "frames": self.frames,
                     "worker": self.where, "pid": os.getpid()})


# --- local processes ------------------------------------------------------------------------------------------

class LocalPool:
    """`size` worker processes on this machine (spawned: no state shared with the driver), one engine each."""

    def __init__(self, settings: Settings, size: int) -> None:
        self.settings, self.size = settings, size
        self._ctx = mp.get_context("spawn")
        self._events: mp.Queue[tuple[str, int, dict[str, Any]]] = self._ctx.Queue()
        self._procs: list[BaseProcess] = []
        self._inboxes: list[mp.Queue[dict[str, Any] | None]] = []
        self._busy: dict[int, Job] = {}
        for slot in range(size):
            self._procs.append(self._start(slot))

    def _start(self, slot: int) -> BaseProcess:
        inbox: mp.Queue[dict[str, Any] | None] = self._ctx.Queue()
        proc = self._ctx.Process(target=_serve, args=(dataclasses.asdict(self.settings), slot, inbox, self._events),
                                 name=f"streampose-batch-{slot}", daemon=True)
        proc.start()
        if slot < len(self._inboxes):
            self._inboxes[slot] = inbox
        else:
            self._inboxes.append(inbox)
        return proc

    def submit(self, slot: int, job: Job) -> None:
        self._busy[slot] = job
        self._inboxes[slot].put(dataclasses.asdict(job))

    def poll(self, timeout: float) -> tuple[list[dict[str, Any]], list[tuple[int, Outcome]]]:
        """Progress reports and finished inputs; a worker found dead while busy is replaced and its input `Lost`."""
        progress: list[dict[str, Any]] = []
        done: list[tuple[int, Outcome]] = []
        try:
            event = self._events.get(timeout=timeout)
            while True:
                kind, slot, data = event
                job = self._busy.get(slot)
                if kind == "progress":
                    progress.append(data)
                elif job is not None and (job.name, job.attempt) == (data["name"], data["attempt"]):
                    del self._busy[slot]  # (not a late word from a worker already given up for dead)
                    done.append((slot, data))
                event = self._events.get_nowait()
        except queue.Empty:
            pass
        for slot, job in list(self._busy.items()):
            proc = self._procs[slot]
            if not proc.is_alive():
                del self._busy[slot]
                done.append((slot, Lost(f"worker process {proc.pid} died (exit code {proc.exitcode}) "
                                        f"during {job.path}")))
                self._procs[slot] = self._start(slot)
        return progress, done

    def close(self) -> None:
        """Idle workers finish; busy ones (Ctrl-C, an error) are killed: their outputs are partial, never renamed."""
        for slot, inbox in enumerate(self._inboxes):
            if slot not in self._busy:
                inbox.put(None)
        for slot, proc in enumerate(self._procs):
            if slot in self._busy:
                proc.kill()
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
                proc.join()
        self._busy.clear()


def _serve(settings: dict[str, Any], slot: int, inbox: mp.Queue[dict[str, Any] | None],
           events: mp.Queue[tuple[str, int, dict[str, Any]]]) -> None:
    """A local worker's life: inputs from its inbox until None; Ctrl-C is the driver's to handle."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    worker = Worker(Settings(**settings), lambda p: events.put(("progress", slot, p)))
    try:
        while (job := inbox.get()) is not None:
            events.put(("done", slot, worker.process(Job(**job))))
    finally:
        worker.close()


# --- Ray ------------------------------------------------------------------------------------------------------

class RayPool:
    """`size` actors on a Ray cluster, each with `settings.threads` CPUs (or one GPU for a cuda device) from
    Ray's resources, one engine each. `address`: `local` starts a cluster for the run (shut down after it), `auto`
    or HOST:PORT joins a running one; a process that already called `ray.init` uses that cluster."""

    def __init__(self, settings: Settings, size: int | None, address: str) -> None:
        import ray as ray_module

        self._ray: Any = ray_module  # its actor handles are dynamic: checked here as Any
        ray = self._ray
        self._own = not ray.is_initialized()
        if self._own:
            if address not in ("local", "auto"):
                check_reachable(address)
            try:
                ray.init(address=address, include_dashboard=False, logging_level=logging.ERROR,
                         log_to_driver=False, configure_logging=True)
            except ConnectionError as e:
                raise BatchError(f"cannot join the Ray cluster at {address}: {e}") from None
        gpu = settings.device.startswith("cuda")
        cpus = settings.threads or 1
        have = ray.cluster_resources()
        per = {"GPU": 1.0} if gpu else {"CPU": float(cpus)}
        (kind, need), = per.items()
        fits = int(have.get(kind, 0) // need)
        self.size = size or fits
        if self.size < 1 or self.size > fits:
            self.close()
            raise BatchError(f"the Ray cluster has {have.get(kind, 0):g} {kind}s; {size or 1} workers of "
                             f"{need:g} {kind} each do not fit (see --workers, --cpus-per-worker)")
        self.settings = dataclasses.replace(settings, threads=cpus)
        # found by name: an actor handle among a restartable actor's arguments would live in the object store
        progress = f"streampose-progress-{os.getpid()}-{time.time_ns()}"
        self._progress = ray.remote(_RayProgress).options(num_cpus=0, name=progress).remote()
        actor = ray.remote(_RayWorker).options(num_cpus=0 if gpu else cpus, num_gpus=1 if gpu else 0,
                                               max_restarts=-1, max_task_retries=0)
        self._actors = [actor.remote(json.dumps(dataclasses.asdict(self.settings)), progress)
                        for _ in range(self.size)]
        self._busy: dict[Any, tuple[int, Job]] = {}
        self._down: set[int] = set()
        self._asked: dict[int, float] = {}  # slot -> since when its worker is being asked again after ActorUnavailable

    def submit(self, slot: int, job: Job) -> None:
        self._wait_restarted(slot)
        self._busy[self._actors[slot].process.remote(dataclasses.asdict(job))] = (slot, job)

    def _wait_restarted(self, slot: int) -> None:
        """An actor whose process died is restarted by Ray (engine and all); calls made before it is back fail."""
        if slot not in self._down:
            return
        ray, deadline = self._ray, time.monotonic() + RESTART_WAIT_S
        while True:
            try:
                ray.get(self._actors[slot].__ray_ready__.remote(), timeout=10)
                self._down.discard(slot)
                return
            except (ray.exceptions.ActorUnavailableError, ray.exceptions.GetTimeoutError):
                if time.monotonic() > deadline:
                    raise BatchError(f"Ray worker {slot} did not come back within {RESTART_WAIT_S:g} s after its "
                                     "process died") from None
                time.sleep(0.2)

    def poll(self, timeout: float) -> tuple[list[dict[str, Any]], list[tuple[int, Outcome]]]:
        ray = self._ray
        done: list[tuple[int, Outcome]] = []
        if self._busy:
            ready, rest = ray.wait(list(self._busy), num_returns=1, timeout=timeout)
            if ready and rest:  # and whatever else is done by now
                ready += ray.wait(rest, num_returns=len(rest), timeout=0)[0]
            for ref in ready:
                slot, job = self._busy.pop(ref)
                try:
                    outcome = ray.get(ref)
                except ray.exceptions.RayTaskError as e:  # raised inside the method: a bug, not the worker's death
                    outcome = {"name": job.name, "status": "failed", "error": str(e).splitlines()[-1]}
                except ray.exceptions.ActorUnavailableError:  # unreachable for a moment (a loaded machine): alive,
                    self._ask_again(slot, job)  # and its input may be running or done there; ask it for the result
                    continue
                except ray.exceptions.RayError as e:  # the actor (or its node) died; Ray restarts it
                    self._down.add(slot)
                    outcome = Lost(f"Ray worker died during {job.path}: {type(e).__name__}")
                if outcome is None:  # asked again, and the worker never got the input (or restarted since)
                    outcome = Lost(f"Ray worker died during {job.path} or never received it (back without its outcome)")
                self._asked.pop(slot, None)
                done.append((slot, outcome))
        progress: list[dict[str, Any]] = ray.get(self._progress.take.remote())
        return progress, done

    def _ask_again(self, slot: int, job: Job) -> None:
        """Ask a worker that was unreachable for the outcome of `job` (it queues behind the input, if that is still
        running); an input is run again only when the worker never had it, or stayed unreachable too long."""
        since = self._asked.setdefault(slot, time.monotonic())
        if time.monotonic() - since > RESTART_WAIT_S:
            raise BatchError(f"Ray worker {slot} has been unreachable for {RESTART_WAIT_S:g} s; is its node up?")
        self._busy[self._actors[slot].outcome.remote(job.name, job.attempt)] = (slot, job)

    def close(self) -> None:
        """Kill the actors (those busy after Ctrl-C too); a cluster started for the run is shut down."""
        ray = self._ray
        for a in getattr(self, "_actors", []):
            ray.kill(a, no_restart=True)
        if getattr(self, "_progress", None) is not None:
            ray.kill(self._progress)
        if self._own:
            ray.shutdown()


class _RayWorker:
    """A Ray actor around a `Worker`, reporting progress to the driver's `_RayProgress` actor."""

    def __init__(self, settings: str, progress: str) -> None:
        import ray

        reports: Any = ray.get_actor(progress)
        self.worker = Worker(Settings(**json.loads(settings)), lambda p: reports.add.remote(p))
        self.last: dict[str, Any] | None = None

    def process(self, job: dict[str, Any]) -> dict[str, Any]:
        self.last = self.worker.process(Job(**job))
        return self.last

    def outcome(self, name: str, attempt: int) -> dict[str, Any] | None:
        """The outcome of that input if it was this process's last (calls run in order: after it, if running)."""
        last = self.last
        return last if last is not None and (last["name"], last["attempt"]) == (name, attempt) else None


class _RayProgress:
    """Collects the workers' progress reports until the driver takes them."""

    def __init__(self) -> None:
        self.reports: list[dict[str, Any]] = []

    def add(self, report: dict[str, Any]) -> None:
        self.reports.append(report)

    def take(self) -> list[dict[str, Any]]:
        out, self.reports = self.reports, []
        return out


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail in one line, at once, when nothing listens at a Ray cluster's HOST:PORT (Ray itself waits long)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise BatchError(f"--ray {address}: expected HOST:PORT of a running cluster (`ray start --head` prints it), "
                         "auto, or nothing for a local cluster")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        raise BatchError(f"Ray cluster at {address} is unreachable ({e.strerror or e}); start one with "
                         "`ray start --head`, or use --ray alone for a local cluster") from None
