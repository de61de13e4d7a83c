"""Throughput of `streampose batch` here: 1 vs 2 workers, local processes vs Ray, and Ray's fixed costs, one run.

    python tools/batch_speed.py                 # 4 copies of basketball_240p (1,200 frames) -> docs/bench/batch.json
    python tools/batch_speed.py --copies 8 --rounds 3

Each configuration calls `run_batch` (what `streampose batch` runs) on the same inputs into a fresh folder,
timed from the call to its return, so worker start-up and model loading are in it, as a user pays them; each
worker gets cores / workers CPU threads. The Ray rows join one cluster started here (`ray.init`, no dashboard);
its start is timed on its own, as is an empty call to an actor (Ray's cost per task). From the manifest, the
frames per second once the workers are up (from the first input's start to the last one's end) and the time
from one input to the next in a batch of 24 one-image inputs on one worker (what an input costs beyond its
frames, locally and on Ray). Configurations alternate within each round; medians of the rounds are reported.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from streampose.batch import Report, run_batch
from streampose.workers import Settings

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("STREAMPOSE_DATA", ROOT.parent / "shared" / "data"))
CLIP = DATA / "video" / "basketball_240p.mp4"
IMAGES = DATA / "lsp" / "images"


class Echo:
    """An actor with an empty method: the round trip of a call is Ray's fixed cost per task."""

    def ping(self) -> int:
        return 0


def timed(fn: Callable[[], Report]) -> tuple[float, float, float]:
    """Seconds of the call, seconds from its first input's start to its last input's end, and from one input's
    end to the next one's (the manifest's times)."""
    t0 = time.perf_counter()
    entries = list(fn().entries.values())
    wall = time.perf_counter() - t0
    ends = sorted(e["finished"] for e in entries)
    running = ends[-1] - min(e["finished"] - e["seconds"] for e in entries)
    return wall, running, (ends[-1] - ends[0]) / max(1, len(ends) - 1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--copies", type=int, default=4, help="copies of the clip, one input each (default: %(default)s)")
    ap.add_argument("--rounds", type=int, default=2, help="timed rounds (default: %(default)s)")
    ap.add_argument("--json", type=Path, default=ROOT / "docs" / "bench" / "batch.json")
    ap.add_argument("--note", default="", help="the conditions of the run, in a sentence shown under the table")
    args = ap.parse_args(argv)
    if not CLIP.is_file() or not IMAGES.is_dir():
        print(f"batch_speed: {CLIP} or {IMAGES} not found; set STREAMPOSE_DATA", file=sys.stderr)
        return 1
    import ray as ray_module

    ray: Any = ray_module  # its actor handles are dynamic
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    work = Path(tempfile.mkdtemp(prefix="batch_speed-"))
    clips = []
    for i in range(args.copies):
        clips.append(str(work / f"clip{i}.mp4"))
        os.symlink(CLIP, clips[-1])
    image = sorted(IMAGES.glob("*.jpg"))[0]
    singles = []
    for i in range(24):
        singles.append(str(work / f"image{i}.jpg"))
        os.symlink(image, singles[-1])
    frames = args.copies * 300

    t0 = time.perf_counter()
    context = ray.init(num_cpus=cores, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    cluster_start = time.perf_counter() - t0
    try:
        echo: Any = ray.remote(Echo).options(num_cpus=0).remote()
        ray.get(echo.ping.remote())
        t0 = time.perf_counter()
        for _ in range(200):
            ray.get(echo.ping.remote())
        per_call_ms = (time.perf_counter() - t0) / 200 * 1e3
        address = str(context.address_info["gcs_address"])

        def batch(inputs: list[str], workers: int, on_ray: bool) -> tuple[float, float, float]:
            out = work / "out"
            shutil.rmtree(out, ignore_errors=True)
            settings = Settings(out=str(out), threads=max(1, cores // workers))
            return timed(lambda: run_batch(inputs, settings, workers=workers, ray=address if on_ray else None,
                                           progress=False))

        configs = [(mode, n) for mode in ("local", "ray") for n in (1, 2)]
        walls: dict[tuple[str, int], list[float]] = {c: [] for c in configs}
        running: dict[tuple[str, int], list[float]] = {c: [] for c in configs}
        per_input: dict[str, list[float]] = {"local": [], "ray": []}
        for k in range(args.rounds):
            for mode, n in configs:
                wall, up, _ = batch(clips, n, mode == "ray")
                walls[mode, n].append(wall)
                running[mode, n].append(up)
                print(f"round {k + 1}: {mode} {n} worker(s): {wall:.2f} s, {up:.2f} s once up", flush=True)
            for mode in per_input:
                per_input[mode].append(batch(singles, 1, mode == "ray")[2])
    finally:
        ray.shutdown()
        shutil.rmtree(work, ignore_errors=True)

    rows: list[dict[str, Any]] = []
    for mode, n in configs:
        wall, up = statistics.median(walls[mode, n]), statistics.median(running[mode, n])
        rows.append({"mode": mode, "workers": n, "threads_per_worker": max(1, cores // n), "seconds": round(wall, 2),
                     "frames": frames, "fps": round(frames / wall, 1), "fps_once_up": round(frames / up, 1)})
    base = {r["mode"]: r["fps"] for r in rows if r["workers"] == 1}
    for r in rows:
        r["vs_1_worker"] = round(r["fps"] / base[r["mode"]], 2)
        r["vs_local"] = round(r["fps"] / next(q["fps"] for q in rows if q["mode"] == "local"
                                              and q["workers"] == r["workers"]), 2)
    result = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": {"cpu": platform.processor() or platform.machine(),
              "cores": cores}, "inputs": f"{args.copies} x {CLIP.name} ({frames} frames)", "rounds": args.rounds,
              "rows": rows, "ray": {"version": ray.__version__, "cluster_start_s": round(cluster_start, 2),
                                    "call_round_trip_ms": round(per_call_ms, 2)},
              "per_input_s": {m: round(statistics.median(v), 3) for m, v in per_input.items()}, "note": args.note}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
