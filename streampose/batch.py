"""`streampose batch`: every frame of an archive of videos and image folders, posed into files, on this
machine's cores or a Ray cluster.

    streampose batch matches/*.mp4 --out poses/ --workers 2         # local worker processes
    streampose batch archive.txt --out /shared/poses --ray auto     # a running Ray cluster; paths all nodes see

For each input `DIR/NAME.jsonl` (or .parquet, .csv; `--save-video` adds `DIR/NAME.mp4`) and one
`DIR/manifest.json` saying, per input, its status, frames, seconds, error and attempts. Outputs are written
under temporary names and renamed when complete, and the manifest is rewritten (atomically) after each input,
so a batch stopped at any point and run again skips what is done and redoes the rest: no output holds an
input's frames twice or in part. Inputs run on workers (`streampose.workers`), one input at a time each; an
input whose worker dies runs again (`--retries`), an input that fails (unreadable) is recorded and the others
go on; the exit code is 1 when any failed.
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import hashlib
import json
import os
import re
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from streampose import models
from streampose.backends import NAMES
from streampose.workers import BatchError, Job, LocalPool, Lost, RayPool, Settings, outputs, part_name

FORMATS = ("jsonl", "parquet", "csv")
LIST_SUFFIXES = (".txt", ".list", ".lst")
"""A text file of inputs, one path a line (relative paths are relative to the file; `#` starts a comment)."""
MANIFEST = "manifest.json"
POLL_S = 0.2
SAME_RESULTS = ("model", "detector", "crop", "people")
"""Settings that change what an output holds: an input done with other values is done again."""


@dataclass
class Report:
    """What a batch did: the manifest entry of each of its inputs, and those it found done already."""

    entries: dict[str, dict[str, Any]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[str]:
        return [n for n, e in self.entries.items() if e["status"] != "done"]


# --- inputs ---------------------------------------------------------------------------------------------------

def find_inputs(items: Sequence[str]) -> list[str]:
    """The absolute paths of the inputs, in order, once each: files and folders as given, glob patterns expanded,
    list files read. A path given here that does not exist is an error; one listed in a file is kept (it fails
    as an input, and the others run)."""
    found: list[str] = []
    for item in items:
        path = Path(item)
        if glob.has_magic(item):
            matches = sorted(glob.glob(item, recursive=True))
            if not matches:
                raise BatchError(f"{item}: no file or folder matches")
            found += matches
        elif path.suffix.lower() in LIST_SUFFIXES and path.is_file():
            found += _read_list(path)
        elif not path.exists():
            raise BatchError(f"{item}: no such file or folder")
        else:
            found.append(item)
    return list(dict.fromkeys(os.path.abspath(p) for p in found))


def _read_list(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise BatchError(f"{path}: cannot read the list of inputs ({e})") from None
    entries = [line.split("#", 1)[0].strip() for line in lines]
    return [str(path.parent / e) for e in entries if e]


def name_inputs(paths: Sequence[str]) -> list[Job]:
    """A job per input, named after its file (without suffix) or folder; names that clash get a short hash of
    their path, the same in every run (resuming finds them again)."""
    stems = [re.sub(r"[^\w.-]+", "_", Path(p).stem if Path(p).suffix else Path(p).name).lstrip(".") or "input"
             for p in paths]
    clashes = {s for s in stems if stems.count(s) > 1}
    return [Job(f"{s}-{hashlib.sha1(p.encode()).hexdigest()[:8]}" if s in clashes else s, p)
            for s, p in zip(stems, paths, strict=True)]


def count_frames(path: str) -> int | None:
    """Frames in an input by its header (a folder: its images), for the progress bar; None when unknown."""
    import av

    from streampose.sources import IMAGE_SUFFIXES

    p = Path(path)
    try:
        if p.is_dir():
            return sum(f.suffix.lower() in IMAGE_SUFFIXES and f.is_file() for f in p.iterdir())
        if p.suffix.lower() in IMAGE_SUFFIXES:
            return 1
        with av.open(path) as c:
            return c.streams.video[0].frames or None
    except (OSError, IndexError, ValueError, av.FFmpegError):
        return None


# --- the manifest ---------------------------------------------------------------------------------------------

class Manifest:
    """`DIR/manifest.json`: an entry per input name; rewritten whole through a temporary file after each change."""

    def __init__(self, out: Path) -> None:
        self.path = out / MANIFEST
        self.entries: dict[str, dict[str, Any]] = {}
        if self.path.exists():
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
                self.entries = dict(data["inputs"])
            except (OSError, ValueError, KeyError, TypeError) as e:
                raise BatchError(f"{self.path}: not a batch manifest ({e}); move it away to start afresh") from None

    def done(self, job: Job, settings: Settings) -> bool:
        """Done before with the same input, results settings and outputs, which are all still there."""
        e = self.entries.get(job.name, {})
        return (e.get("status") == "done" and e.get("input") == job.path and e.get("settings") == _key(settings)
                and all((self.path.parent / f).is_file() for f in outputs(settings, job.name)))

    def record(self, job: Job, entry: dict[str, Any]) -> None:
        self.entries[job.name] = entry
        tmp = self.path.with_name(f".{MANIFEST}{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"version": 1, "inputs": self.entries}, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, self.path)


def _key(settings: Settings) -> dict[str, Any]:
    return {k: getattr(settings, k) for k in SAME_RESULTS}


def check_out_dir(out: Path) -> Path:
    """The output folder, created if missing; one line when it cannot be written."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BatchError(f"--out {out}: cannot create the folder ({e.strerror or e})") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise BatchError(f"--out {out}: folder is not writable; choose another")
    return out.resolve()


# --- the driver -----------------------------------------------------------------------------------------------

def run_batch(inputs: Sequence[str], settings: Settings, workers: int | None = None, ray: str | None = None,
              retries: int = 2, progress: bool = True,
              on_progress: Callable[[dict[str, Any]], None] | None = None) -> Report:
    """Pose every input not done yet into `settings.out`. `workers`: local processes (default 1), or Ray actors
    (default: as many as the cluster's resources fit); `ray`: None (this machine), `local` (a Ray cluster started
    for the run), `auto` or HOST:PORT; `retries`: times an input whose worker died runs again; `on_progress`: gets
    each worker report (name, attempt, frames, worker, pid)."""
    out = check_out_dir(Path(settings.out))
    settings = dataclasses.replace(settings, out=str(out))
    jobs = name_inputs(find_inputs(inputs))
    if not jobs:
        raise BatchError("no inputs given")
    manifest = Manifest(out)
    report = Report(skipped=[j.name for j in jobs if manifest.done(j, settings)])
    todo = deque(j for j in jobs if j.name not in report.skipped)
    for job in todo:  # a run stopped before left them
        for f in outputs(settings, job.name):
            (out / part_name(f)).unlink(missing_ok=True)
    if not todo:
        return report
    if ray is None:
        n = workers or 1
        pool: LocalPool | RayPool = LocalPool(dataclasses.replace(
            settings, threads=settings.threads or max(1, _cores() // n)), min(n, len(todo)))
    else:
        pool = RayPool(settings, workers, ray)
    bar = tqdm(total=sum(count_frames(j.path) or 0 for j in todo) or None, unit="f", disable=None if progress else True,
               dynamic_ncols=True, desc=f"0/{len(todo)} inputs")
    try:
        _drive(pool, todo, manifest, settings, retries, report, bar, on_progress)
    finally:
        bar.close()
        pool.close()
    return report


def _drive(pool: LocalPool | RayPool, todo: deque[Job], manifest: Manifest, settings: Settings, retries: int,
           report: Report, bar: tqdm[Any], on_progress: Callable[[dict[str, Any]], None] | None) -> None:
    """Keep every worker busy with an input until none is left; record each as it ends."""
    free, running = list(range(pool.size))[::-1], dict[int, Job]()
    shown: dict[str, int] = {}
    history: dict[str, list[dict[str, Any]]] = {}
    total = len(todo)
    try:
        while todo or running:
            while todo and free:
                slot, job = free.pop(), todo.popleft()
                pool.submit(slot, job)
                running[slot] = job
            reports, finished = pool.poll(POLL_S)
            for r in reports:
                if any((j.name, j.attempt) == (r["name"], r["attempt"]) for j in running.values()):  # not a lost one
                    bar.update(r["frames"] - shown.get(r["name"], 0))
                    shown[r["name"]] = r["frames"]
                if on_progress is not None:
                    on_progress(r)
            for slot, outcome in finished:
                job = running.pop(slot)
                free.append(slot)
                bar.update(-shown.pop(job.name, 0))
                if isinstance(outcome, Lost):
                    history.setdefault(job.name, []).append({"attempt": job.attempt, "error": outcome.reason})
                    tqdm.write(f"streampose batch: {job.name}: {outcome.reason}"
                               + ("; running it again" if job.attempt <= retries else ""), file=sys.stderr)
                    if job.attempt <= retries:
                        todo.appendleft(dataclasses.replace(job, attempt=job.attempt + 1))
                        continue
                    outcome = {"status": "failed", "error": outcome.reason}
                if outcome.get("fatal"):
                    raise BatchError(outcome["error"])
                entry = _entry(job, outcome, settings, history.get(job.name, []))
                manifest.record(job, entry)
                report.entries[job.name] = entry
                bar.update(entry["frames"])
                bar.set_description(f"{len(report.entries)}/{total} inputs")
                if entry["status"] != "done":
                    tqdm.write(f"streampose batch: {job.name}: failed: {entry['error']}", file=sys.stderr)
    except BaseException:
        for job in running.values():  # Ctrl-C, or the error above: what was running is not done
            manifest.record(job, _entry(job, {"status": "interrupted"}, settings, history.get(job.name, [])))
        raise


def _entry(job: Job, outcome: dict[str, Any], settings: Settings, retried: list[dict[str, Any]]) -> dict[str, Any]:
    """The manifest's entry for an input."""
    done = outcome.get("status") == "done"
    return {"input": job.path, "status": outcome.get("status", "failed"), "frames": outcome.get("frames", 0),
            "seconds": outcome.get("seconds"), "error": outcome.get("error"), "attempts": job.attempt,
            "retried": retried, "outputs": outputs(settings, job.name) if done else [],
            "worker": outcome.get("worker"), "damaged": outcome.get("damaged", 0),
            "skipped_files": outcome.get("skipped", 0), "settings": _key(settings), "finished": time.time()}


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


# --- the command line -----------------------------------------------------------------------------------------

def add_parser(sub: Any, positive_int: Callable[[str], int], crop_spec: Callable[[str], str]) -> None:
    """`streampose batch`, on the `streampose` command's subparsers (its checks of numbers and crops shared)."""
    b = sub.add_parser(
        "batch", help="pose an archive of videos and image folders into files, on local workers or a Ray cluster",
        description="Pose every frame of each input into DIR/NAME.jsonl (or .parquet, .csv; --save-video adds "
                    "DIR/NAME.mp4), with DIR/manifest.json recording each input's status, frames, seconds, error "
                    "and attempts. Outputs appear only when complete; run the same command again after a stop to "
                    "finish what is left. Exit code 1 when an input failed (the others still complete).",
        epilog="examples:\n  streampose batch matches/*.mp4 --out poses/ --workers 2\n"
               "  streampose batch archive.txt --out poses/ --format parquet --save-video\n"
               "  streampose batch clips/ --out poses/ --ray                # a local Ray cluster for the run\n"
               "  streampose batch /nfs/clips/*.mp4 --out /nfs/poses --ray 10.0.0.1:6379   # a running cluster",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    b.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="video file, image folder, glob pattern (quoted) or text file of paths (.txt, one a line)")
    b.add_argument("--out", required=True, metavar="DIR", help="output folder (created if missing)")
    b.add_argument("--format", default="jsonl", choices=FORMATS,
                   help="keypoint files: JSON lines (the wire map), Parquet or CSV (a row per person; both need "
                        "pyarrow for Parquet) (default: %(default)s)")
    b.add_argument("--save-video", action="store_true", help="also write each input drawn with its poses (.mp4)")
    b.add_argument("--workers", type=positive_int, default=None,
                   help="workers, each with one engine: local processes (default 1) or, with --ray, actors "
                        "(default: as many as the cluster's CPUs fit at --cpus-per-worker, or its GPUs)")
    b.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                   help="run on Ray: alone, a local cluster started for the run; `auto` or HOST:PORT, a running "
                        "cluster (`ray start --head`); inputs and --out must be paths every node sees")
    b.add_argument("--cpus-per-worker", type=positive_int, default=None, metavar="N",
                   help="CPU threads of each worker's engine (default: the cores shared out locally; 1 on Ray)")
    b.add_argument("--retries", type=int, default=2, choices=range(0, 11), metavar="N",
                   help="times an input runs again when its worker dies (default: %(default)s)")
    b.add_argument("--model", default=models.DEFAULT, help="model name, checkpoint or engine (default: %(default)s)")
    b.add_argument("--detector", default=models.DETECTOR, help="person detector (default: %(default)s)")
    b.add_argument("--backend", default="auto", choices=NAMES, help="inference backend (default: %(default)s)")
    b.add_argument("--device", default="cpu",
                   help="torch device; cuda gives each worker one GPU (default: %(default)s)")
    b.add_argument("--crop", default="auto", type=crop_spec, help="as for `run` (default: %(default)s)")
    b.add_argument("--people", type=positive_int, default=1, help="people per frame (default: %(default)s)")
    b.add_argument("--max-batch", type=positive_int, default=4, help="frames per inference call (default: %(default)s)")
    b.set_defaults(func=cmd_batch)


def cmd_batch(args: argparse.Namespace) -> int:
    settings = Settings(out=args.out, fmt=args.format, save_video=args.save_video, model=args.model,
                        backend=args.backend, device=args.device, crop=args.crop, people=args.people,
                        detector=args.detector, max_batch=args.max_batch, threads=args.cpus_per_worker or 0)
    if settings.fmt == "parquet":
        import pyarrow  # noqa: F401  # before any work: a missing extra is one line naming it
    report = run_batch(args.inputs, settings, workers=args.workers, ray=args.ray, retries=args.retries)
    done = len(report.entries) - len(report.failed)
    frames = sum(e["frames"] for e in report.entries.values())
    print(f"streampose batch: {done} done ({frames} frames), {len(report.failed)} failed, {len(report.skipped)} "
          f"done before; {Path(settings.out) / MANIFEST}", file=sys.stderr)
    for name in report.failed:
        print(f"streampose batch: error: {name}: {report.entries[name]['error']}", file=sys.stderr)
    return 1 if report.failed else 0
