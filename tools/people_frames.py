"""Several people on real clips: how many are posed per frame, how stable their ids are, and pictures.

    python tools/people_frames.py                          # the README's three clips, --people 2
    python tools/people_frames.py clip.mp4 --people 3 --frames 40,120 --out docs/people.png

Runs each clip through `PoseStream` as `streampose run CLIP --people N` does (default crop: the detector finds
people, tracking follows them), prints per clip the frames, the share of frames with 0, 1, ... people posed, the
ids used and the id switches, and writes the chosen frames with boxes, ids and skeletons side by side to a PNG.

An id switch here is an id that appears after the first frame on which as many people as at any later time
were already posed: someone was lost and came back under a new id (or a new person walked in, which on these
clips does not happen). It is an upper bound on identity swaps, measured without labels.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

from streampose import argtypes as at
from streampose import models
from streampose.api import model_file
from streampose.checkpoint import CheckpointError
from streampose.crop import CANDIDATES
from streampose.runtime import PoseStream, Result
from streampose.sinks import render

DATA = Path(os.environ.get("STREAMPOSE_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
CLIPS = {"two_people_1080p.mp4": "20,60", "basketball_240p.mp4": "60,240", "pedestrians_576p.avi": "30,150"}


def id_switches(results: list[Result]) -> tuple[int, set[int]]:
    """(switches, every id seen): ids first seen after the frame where the most people were first all posed."""
    counts = [len(r.poses) for r in results]
    most = max(counts, default=0)
    settled = counts.index(most) if most else len(results)
    before = {p.id for r in results[: settled + 1] for p in r.poses}
    seen = {p.id for r in results for p in r.poses}
    return len(seen - before), seen


def picture(results: list[Result], frames: list[int], height: int = 360) -> np.ndarray:
    """The chosen frames drawn (each person in its id's colour), scaled to one height, side by side."""
    tiles = []
    for i in frames:
        canvas = render(results[min(i, len(results) - 1)], None, by_person=True)
        h, w = canvas.shape[:2]
        tiles.append(cv2.resize(canvas, (round(w * height / h), height), interpolation=cv2.INTER_AREA))
    return np.hstack(tiles)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("clips", nargs="*", help=f"videos (default: {', '.join(CLIPS)} from the shared data)")
    ap.add_argument("--people", type=int, default=2)
    ap.add_argument("--frames", help="comma-separated frame indices to draw (default: two per clip)")
    ap.add_argument("--out", type=Path, help="PNG to write (default: docs/people-<clip>.png per clip)")
    ap.add_argument("--model", default=models.DEFAULT, help="pose model name or checkpoint (default: %(default)s)")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--candidates", type=at.count, default=CANDIDATES,
                    help="detections posed beyond --people where someone new is placed (default: %(default)s)")
    ap.add_argument("--rounds", type=at.positive_int, default=1,
                    help="runs per clip, each printed (tracked crops vary a little between runs; default: 1)")
    ap.add_argument("--no-pictures", dest="pictures", action="store_false", help="print the figures only")
    args = ap.parse_args(argv)
    clips = [Path(c) for c in args.clips] or [DATA / "video" / name for name in CLIPS]
    try:
        model_file(args.model)
    except CheckpointError as e:
        print(f"people_frames: {e}", file=sys.stderr)
        return 1
    for clip in clips:
        if not clip.is_file():
            print(f"people_frames: {clip}: not found", file=sys.stderr)
            return 1
        for _ in range(args.rounds):
            with PoseStream(str(clip), args.model, backend=args.backend, people=args.people,
                            candidates=args.candidates) as stream:
                results = list(stream)
            switches, seen = id_switches(results)
            posed = Counter(len(r.poses) for r in results)
            share = ", ".join(f"{k} people {100 * posed[k] / len(results):.0f} %" for k in sorted(posed))
            print(f"{clip.name}: {len(results)} frames; {share}; ids {sorted(seen)}; id switches {switches}",
                  flush=True)
        if not args.pictures:
            continue
        frames = [int(v) for v in (args.frames or CLIPS.get(clip.name, "0")).split(",")]
        out = args.out or Path("docs") / f"people-{clip.stem}.png"
        cv2.imwrite(str(out), picture(results, frames))
        print(f"  wrote {out} (frames {', '.join(map(str, frames))})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
