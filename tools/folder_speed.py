"""How fast a folder of full images goes through `streampose run` (detector and pose model on every image).

    python tools/folder_speed.py                     # 500 LSPET validation images, default model and backend
    python tools/folder_speed.py --images 200 --people 2 --rounds 3
    python tools/folder_speed.py --versus OLD.pt      # also the runtime with another person detector, same run

Links the images into a temporary folder and times, in one run: the runtime alone (`PoseStream` over the
folder with the models already open, from the first image read to the last result: images/s), the same with
one look per person (`--no-refine`), with both second looks also where they nearly coincide (`crop.SAME_LOOK`
off), with no candidate beyond the people asked for (`--candidates 0`), with
the detector run on one image at a time (`runtime.SCENES_AT_ONCE` = 1, as before images waiting were detected
together), with the pose model in the precision `auto` did not choose (bf16 or int8: `openvino_backend.fastest`),
with another detector (`--versus`), and the whole command (`streampose run FOLDER --publish none --keypoints
k.jsonl`, start-up and model loading included) and the same on the folder's first image alone (start-up), each
a median of `--rounds`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from streampose import backends, crop, models, runtime
from streampose.api import PoseEstimator, cpu_engines
from streampose.backends import Backend
from streampose.backends.openvino_backend import cpu_supports
from streampose.checkpoint import CheckpointError
from streampose.detector import open_detector
from streampose.runtime import PoseStream

DATA = Path(os.environ.get("STREAMPOSE_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=500, help="LSPET images from 8501 on (default: %(default)s)")
    ap.add_argument("--people", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--model", default=models.DEFAULT, help="pose model (default: %(default)s)")
    ap.add_argument("--detector", default=models.DETECTOR, help="person detector (default: %(default)s)")
    ap.add_argument("--versus", default="", metavar="DETECTOR",
                    help="also time the runtime with this detector (name, checkpoint or engine), interleaved")
    args = ap.parse_args(argv)
    src = DATA / "lspet" / "images"
    if not src.is_dir():
        print(f"folder_speed: {src} not found; set STREAMPOSE_DATA", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        folder.mkdir()
        for n in range(8501, 8501 + args.images):
            (folder / f"im{n:05d}.jpg").symlink_to(src / f"im{n:05d}.jpg")
        variants: dict[str, dict[str, Any]] = {"runtime (models open)": {},
                                               "  one look (--no-refine)": {"refine": False},
                                               "  second looks that coincide too": {},
                                               "  no candidate (--candidates 0)": {"candidates": 0},
                                               "  detector, 1 image a call": {}}
        inner: dict[str, list[float]] = {v: [] for v in variants}
        at_once, same_look = runtime.SCENES_AT_ONCE, crop.SAME_LOOK
        whole: list[float] = []
        with PoseEstimator(args.model, backend=args.backend, jobs=0) as est, \
                open_detector(args.detector, backend=args.backend) as det, ExitStack() as other:
            used = (f"{est.backend.info.name} {est.backend.info.precision}; detector {det.backend.info.name} "
                    f"{det.backend.info.precision}")
            estimators = {what: est for what in variants}
            detectors = {what: det for what in variants}
            if args.versus:
                versus = other.enter_context(open_detector(args.versus, backend=args.backend))
                what = f"  detector {args.versus} ({versus.backend.info.precision})"
                variants[what], estimators[what], detectors[what], inner[what] = {}, est, versus, []
            if (alternative := _alternative(args.model, args.backend, est.backend.info.precision)) is not None:
                what = f"  pose model in {alternative.info.precision}"
                variants[what] = {}
                estimators[what] = other.enter_context(PoseEstimator(backend=alternative))
                detectors[what], inner[what] = det, []
            for r in range(args.rounds + 1):  # the first pass warms both models up
                for what, options in variants.items():  # interleaved: all see the same machine
                    runtime.SCENES_AT_ONCE = 1 if "1 image a call" in what else at_once
                    crop.SAME_LOOK = 1.01 if "coincide" in what else same_look
                    with PoseStream(str(folder), estimator=estimators[what], detector=detectors[what],
                                    people=args.people, **options) as stream:
                        t0 = time.perf_counter()
                        n = sum(1 for _ in stream)
                        if r:
                            inner[what].append(n / (time.perf_counter() - t0))
            runtime.SCENES_AT_ONCE, crop.SAME_LOOK = at_once, same_look
        exe = Path(sys.executable).parent / "streampose"
        start: list[float] = []
        for _ in range(args.rounds):
            for path in (folder, folder / "im08501.jpg"):
                t0 = time.perf_counter()
                subprocess.run([str(exe), "run", str(path), "--publish", "none", "--people", str(args.people),
                                "--backend", args.backend, "--model", args.model, "--detector", args.detector,
                                "--keypoints", str(Path(tmp) / "k.jsonl")], check=True, capture_output=True)
                (whole if path == folder else start).append(time.perf_counter() - t0)
    print(f"{args.images} full images, --people {args.people}, {args.model}: {used}")
    for what, rates in [*inner.items(), ("whole command", [args.images / t for t in whole])]:
        print(f"  {what:<32} {statistics.median(rates):.1f} images/s  (rounds {', '.join(f'{v:.1f}' for v in rates)})")
    print(f"  {'  the command on one image':<32} {statistics.median(start):.2f} s  (start-up and one image)")
    return 0


def _alternative(model: str, backend: str, chosen: str) -> Backend | None:
    """The model's CPU engine that `auto` did not choose (`api.cpu_engines`: bf16/fp32 or the shipped int8), opened
    as the runtime opens it (jobs=0); None where there is no choice."""
    engines = [(path, precision) for path, precision in cpu_engines(model) if cpu_supports(precision)]
    others = [(path, precision) for path, precision in engines if precision != chosen]
    if backend != "auto" or len(engines) < 2 or not others:
        return None
    return backends.create("openvino", others[0][0], precision=others[0][1], jobs=0)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (CheckpointError, ValueError) as e:  # a model or detector that cannot be opened: say which, and stop
        print(f"folder_speed: {e}", file=sys.stderr)
        sys.exit(1)
