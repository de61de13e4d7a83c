"""streampose against other pose models, in one run: speed first, accuracy second.

    python tools/peers/compare.py                      # every peer, both clips, 3 rounds, both accuracy sets
    python tools/peers/compare.py --quick              # smoke test: 40 frames, 20 images a set, 1 round
    python tools/peers/compare.py --no-speed --peers yolo --datasets lsp --detector runs/person-det/last.pt
    python tools/peers/compare.py --clips clip.mp4 --rounds 5 --json peers.json --no-accuracy

The peers, MediaPipe BlazePose full and YOLO11n-pose (Ultralytics), run in their own virtual environments
(see envs.py; created on first use under ~/.cache/streampose/peers), each through a runner script in a
subprocess, because their pinned dependencies conflict with ours (mediapipe 0.10.21 needs numpy < 2 and
opencv-contrib; Ultralytics needs torchvision).

Speed, per clip, alternating ours / each peer round by round so that machine noise hits all alike (medians):
- ours: `PoseStream(clip, max_batch=...)` with the default model, backend (auto) and crop (auto: the person
  detector on the first frame, then tracking, as `streampose run` does), every result consumed; frames / wall
  seconds from the first frame read to the last result, with the backend opened and warmed up beforehand (model
  loading is not timed).
- MediaPipe BlazePose full in video (tracking) mode, its fastest real use; YOLO11n-pose `predict` on each
  frame at `--yolo-imgsz`: the runner's own figure, decode + inference after a few warm-up frames, its
  process start-up excluded.
All read the clip from frame 0 (`--frames N`: the first N frames only) with all cores available.

Accuracy: PCK@0.2 (torso) over the 12 limb joints with the LSP protocol of train/evaluate.py, on each of
`DATASETS` (LSPET's validation images 8501-9000 and LSP images 901-1000, neither trained on), in two
protocols (`PROTOCOLS`):
- crop given: ours is exactly what `streampose eval` does (torch backend for a named model or checkpoint).
  Each peer gets the same square crop our model sees (1.25 x the labelled-joint box), warped to
  `--peer-crop` pixels (`--peer-context F`: F times its side, same centre), and its landmarks are mapped
  back to image pixels.
- full image: every model gets the whole image and must find the person itself, and its most confident
  person is scored: ours through `train.evaluate.score_full_image` (the person detector `--detector`, then
  the pose model with its second look, as `streampose run` treats images), BlazePose in static-image mode
  (its detector picks one person), YOLO's box of highest confidence (also in a crop that holds several people).
- small (`--protocols ... small`, not by default): crop given, each person seen far from the camera: the image
  shrunk so that our crop is `--small` pixels wide and enlarged back (`train.evaluate.shrunk`) before any
  model crops it, ours as `streampose eval --small`.
An image where a model finds no one counts every joint as missed; the tables say how often one was found.
Peer landmarks map onto LSP14 by `LAYOUTS` (person-centric left/right on all sides). Neck and head top have
no counterpart in either peer, so only the limbs are compared.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

import streampose
from streampose import argtypes as at
from streampose import models
from streampose.api import PoseEstimator
from streampose.backends import create, is_engine
from streampose.detector import PersonDetector, open_detector
from streampose.geometry import crop_transform
from streampose.joints import COCO17, LIMBS12
from streampose.runtime import PoseStream
from train.datasets import Dataset, load_lsp
from train.evaluate import Report, lsp_pck, score, score_full_image, shrink_factor

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # run as a script, the folder is there already; imported, it may not be
    sys.path.insert(0, str(HERE))
from envs import PEERS, Peer, cache_root, ensure_venv  # noqa: E402
from tables import PROTOCOLS, Accuracy, Row, Score, footnote, format_accuracy, format_speed, ratio  # noqa: E402

ROOT = HERE.parents[1]
DATA = Path(os.environ.get("STREAMPOSE_DATA", ROOT.parent / "shared" / "data"))
DEFAULT_CLIPS = [DATA / "video" / "single_person_studio.mp4", DATA / "video" / "two_people_1080p.mp4"]
DATASETS: dict[str, tuple[str, int, int]] = {"lspet": ("lspet", 8501, 9000), "lsp": ("lsp", 901, 1000)}
"""Accuracy sets: name -> (folder under --data, first and last image number). tools/performance.py plots the
first set's crop-given figure."""
DEFAULT_PROTOCOLS = ["crop", "full"]

MP33_TO_LSP14: dict[str, int] = {
    "r_ankle": 28, "r_knee": 26, "r_hip": 24, "l_hip": 23, "l_knee": 25, "l_ankle": 27,
    "r_wrist": 16, "r_elbow": 14, "r_shoulder": 12, "l_shoulder": 11, "l_elbow": 13, "l_wrist": 15,
}
"""LSP14 joint -> BlazePose landmark index. BlazePose's left/right are the person's own, as LSP's
(index 28 is the right ankle). LSP's neck and head_top have no counterpart and stay unscored."""
COCO17_TO_LSP14: dict[str, int] = {name: COCO17.index(name) for name in LIMBS12}
"""LSP14 joint -> COCO17 keypoint index (YOLO's order), by name: COCO's left/right are the person's own too,
and the 12 limbs are all its joints that LSP14 has (neck and head_top are not COCO keypoints)."""


@dataclass(frozen=True)
class Layout:
    """A peer's landmarks: how many its runner returns, and which of them is each LSP14 limb joint."""

    name: str
    count: int
    to_lsp14: dict[str, int]


LAYOUTS = {"mediapipe": Layout("BlazePose", 33, MP33_TO_LSP14), "yolo": Layout("COCO17", 17, COCO17_TO_LSP14)}
"""Each peer's layout, by its name in envs.PEERS."""

QUICK = {"frames": 40, "images": 20, "rounds": 1, "warmup": 5}
FULL = {"frames": 0, "images": 0, "rounds": 3, "warmup": 10}


def to_lsp14(landmarks: npt.ArrayLike | None, names: Sequence[str], layout: Layout) -> npt.NDArray[np.float32]:
    """(layout.count, >=3) landmarks (x, y, visibility or confidence) -> (len(names), 3) in the order of
    `names` (an LSP14 joint list). Joints without a counterpart in the layout, and every joint where no
    person was found (`landmarks` None), are NaN, which PCK counts as missed."""
    out = np.full((len(names), 3), np.nan, dtype=np.float32)
    if landmarks is None:
        return out
    lm = np.asarray(landmarks, dtype=np.float32)
    if lm.ndim != 2 or lm.shape[0] != layout.count or lm.shape[1] < 3:
        raise ValueError(f"expected ({layout.count}, 3) {layout.name} landmarks, got shape {lm.shape}")
    for i, name in enumerate(names):
        if name in layout.to_lsp14:
            out[i] = lm[layout.to_lsp14[name], :3]
    return out


def log(msg: str) -> None:
    print(f"peers: {msg}", file=sys.stderr, flush=True)


# --- peers ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PeerRun:
    """A peer ready to run: its venv's python, and the runner options this command line sets (`note` says
    them in its label)."""

    peer: Peer
    python: Path
    options: tuple[str, ...] = ()
    note: str = ""

    @property
    def label(self) -> str:
        return self.peer.label + (f" ({self.note})" if self.note else "")

    def run(self, args: Sequence[str], timeout: float) -> list[str]:
        """The runner's stdout lines; RuntimeError with the end of its stderr if it fails."""
        runner = HERE / self.peer.runner
        proc = subprocess.run([str(self.python), str(runner), *args, *self.options], capture_output=True,
                              text=True, timeout=timeout, check=False)
        if proc.returncode != 0:
            tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
            raise RuntimeError(f"{self.peer.name} runner {' '.join(args[:1])} failed (exit {proc.returncode}):\n"
                               f"{tail}")
        return [line for line in proc.stdout.splitlines() if line.strip()]


def peer_run(name: str, python: Path, yolo_imgsz: int) -> PeerRun:
    """The peer `name` with the runner options the command line sets for it."""
    if name == "yolo":
        return PeerRun(PEERS[name], python, ("--imgsz", str(yolo_imgsz)), f"{yolo_imgsz} px")
    return PeerRun(PEERS[name], python)


# --- speed ---------------------------------------------------------------------------------------
def ours_speed(estimator: PoseEstimator, detector: PersonDetector, clip: str, frames: int, max_batch: int
               ) -> tuple[int, float]:
    """(frames, wall seconds) of one pass through `PoseStream` with its defaults (the detector finds the person,
    tracking follows), consuming every result."""
    n = 0
    with PoseStream(clip, estimator=estimator, detector=detector, max_batch=max_batch) as stream:
        t0 = time.perf_counter()
        for _ in stream:
            n += 1
            if frames and n >= frames:
                break
        seconds = time.perf_counter() - t0
    return n, seconds


def peer_speed(peer: PeerRun, clip: str, frames: int, warmup: int) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(peer.run(["speed", clip, "--frames", str(frames), "--warmup", str(warmup)],
                                              timeout=1800)[-1])
    return out


def speed(estimator: PoseEstimator, detector: PersonDetector, peers: Sequence[PeerRun], clips: Sequence[str],
          rounds: int, frames: int, warmup: int, max_batch: int) -> dict[str, dict[str, Any]]:
    """Per clip: ours and each peer, alternating, `rounds` each; medians and every round. `ratio` is ours /
    the first peer (what tools/performance.py reads); each peer's entry has its own."""
    result: dict[str, dict[str, Any]] = {}
    for clip in clips:
        name = Path(clip).stem
        ours_fps: list[float] = []
        peer_runs: dict[str, list[dict[str, Any]]] = {p.peer.name: [] for p in peers}
        ours_frames = 0
        ours_speed(estimator, detector, clip, max(warmup, max_batch), max_batch)  # warm-up, not timed
        for r in range(rounds):
            ours_frames, sec = ours_speed(estimator, detector, clip, frames, max_batch)
            ours_fps.append(ours_frames / sec)
            log(f"{name} round {r + 1}/{rounds}: streampose {ours_fps[-1]:.1f} fps ({ours_frames} frames)")
            for p in peers:
                run = peer_speed(p, clip, frames, warmup)
                peer_runs[p.peer.name].append(run)
                log(f"{name} round {r + 1}/{rounds}: {p.peer.name} {run['fps']:.1f} fps ({run['frames']} frames, "
                    f"person found in {run['detected']})")
        ours_median = statistics.median(ours_fps)
        entry: dict[str, Any] = {"clip": clip, "ours": {"fps": ours_median, "rounds": ours_fps, "frames": ours_frames}}
        for peer_name, runs in peer_runs.items():
            fps = [float(run["fps"]) for run in runs]
            entry[peer_name] = {"fps": statistics.median(fps), "rounds": fps, "frames": runs[-1]["frames"],
                                "detected": [run["detected"] for run in runs], "versions": runs[-1]["versions"],
                                "ratio": ratio(ours_median, statistics.median(fps))}
        if peers:
            entry["ratio"] = entry[peers[0].peer.name]["ratio"]
        result[name] = entry
    return result


# --- accuracy ------------------------------------------------------------------------------------
def eval_backend(model: str) -> str:
    """`streampose eval`'s backend: an engine's own (auto), torch for a name or checkpoint."""
    return "auto" if is_engine(model) else "torch"


def ours_accuracy(model: str, dataset: Dataset, small: int = 0) -> Report:
    """`streampose eval` on `dataset` (`--small`): its Report, the backend used in its `extra`."""
    ckpt = model if is_engine(model) else streampose.load_model(model, joints=dataset.joints)
    with create(eval_backend(model), ckpt) as backend:
        report = score(backend, dataset, progress=False, small=small)
        report.extra["backend"] = f"{backend.info.name} {backend.info.precision}"
        return report


def peer_items(dataset: Dataset, size: int | None = None, context: float = 1.0, small: int = 0
               ) -> list[dict[str, Any]]:
    """What a peer runner is given: each whole image (`size` None), or each image with the image->crop affine
    of our own crop (its side times `context`, same centre), to be resampled to `size` px; with `small`, the
    image first shrunk by "shrink" and enlarged back, as `train.evaluate.shrunk` does for ours."""
    if size is None:
        return [{"image": str(a.image)} for a in dataset.items]
    return [{"image": str(a.image), "affine": crop_transform(a.center, a.scale * context, size).tolist(),
             "size": size, **({"shrink": shrink_factor(a.scale, small)} if small else {})} for a in dataset.items]


def peer_accuracy(peer: PeerRun, dataset: Dataset, items: list[dict[str, Any]]) -> Score:
    """The peer's LSP Score on `items` (one per dataset image, as `peer_items` makes them): limbs only meaningful."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "items.json"
        path.write_text(json.dumps(items))
        lines = peer.run(["landmarks", str(path)], timeout=3600)
    found: dict[int, Any] = {}
    for line in lines:
        row = json.loads(line)
        found[int(row["i"])] = row["landmarks"]
    if len(found) != len(dataset.items):
        raise RuntimeError(f"{peer.peer.name} runner returned {len(found)} results for {len(dataset.items)} images")
    names, layout = dataset.joints.names, LAYOUTS[peer.peer.name]
    pred = np.stack([to_lsp14(found[i], names, layout) for i in range(len(dataset.items))])
    return Score(lsp_pck(pred, dataset), sum(v is not None for v in found.values()), len(dataset.items))


def accuracy(datasets: dict[str, Dataset], protocols: Sequence[str], model: str,
             full_image: PoseEstimator | None, peers: Sequence[PeerRun], crop_px: int,
             context: float, small: int) -> dict[str, list[Accuracy]]:
    """Every model on every dataset under every protocol: dataset name -> ours first, then the peers.
    `full_image`: our estimator with its person detector, where the full-image protocol is asked for."""
    out: dict[str, list[Accuracy]] = {}
    for key, ds in datasets.items():
        ours = Accuracy(f"streampose {model}")
        out[key] = [ours, *(Accuracy(p.label) for p in peers)]
        log(f"accuracy: {len(ds)} images of {ds.name}, ours")
        if "crop" in protocols:
            ours.scores["crop"] = Score(ours_accuracy(model, ds))
        if "small" in protocols:
            ours.scores["small"] = Score(ours_accuracy(model, ds, small))
        if full_image is not None:
            rep = score_full_image(full_image, ds, progress=False)
            ours.scores["full"] = Score(rep, rep.extra.pop("found"), rep.extra.pop("of"))
        for p, row in zip(peers, out[key][1:], strict=True):
            for protocol in protocols:
                size = None if protocol == "full" else crop_px
                shrink = small if protocol == "small" else 0
                seen = f", seen at {small} px" if shrink else ""
                log(f"accuracy: {p.peer.name}, {PROTOCOLS[protocol]}"
                    + (f" ({crop_px} px, crop x{context:g})" if size else "") + seen)
                row.scores[protocol] = peer_accuracy(p, ds, peer_items(ds, size, context, shrink))
    return out


def accuracy_json(datasets: dict[str, Dataset], peers: Sequence[PeerRun], tables: dict[str, list[Accuracy]]
                  ) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, rows in tables.items():
        first = next(iter(rows[0].scores.values())).report
        names = ["ours", *(p.peer.name for p in peers)]
        out[key] = {"data": datasets[key].name, "metric": first.metric, "images": first.images,
                    "skipped": first.skipped,
                    "models": {name: {"label": row.model, **{p: s.to_json(limbs_only=name != "ours")
                                                             for p, s in row.scores.items()}}
                               for name, row in zip(names, rows, strict=True)}}
    return out


# --- the command ---------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "os": platform.platform()}


def load_datasets(root: Path, names: Sequence[str], images: int) -> dict[str, Dataset]:
    """`DATASETS` by name, the first `images` of each (0: all)."""
    out = {}
    for name in names:
        folder, first, last = DATASETS[name]
        ds = load_lsp(root / folder, first, last)
        out[name] = ds.head(images) if images else ds
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", nargs="+", default=[str(c) for c in DEFAULT_CLIPS], help="videos timed for speed")
    ap.add_argument("--rounds", type=int, help=f"alternating rounds per clip (default {FULL['rounds']})")
    ap.add_argument("--frames", type=int, help="time the first N frames of each clip (default 0: all of it)")
    ap.add_argument("--warmup", type=int, help=f"untimed warm-up frames (default {FULL['warmup']})")
    ap.add_argument("--images", type=int, help="score the first N images of each dataset (default 0: all)")
    ap.add_argument("--quick", action="store_true",
                    help=f"smoke test: {QUICK['frames']} frames, {QUICK['images']} images, {QUICK['rounds']} round")
    ap.add_argument("--no-accuracy", action="store_true", help="speed only")
    ap.add_argument("--no-speed", action="store_true", help="accuracy only")
    ap.add_argument("--data", type=Path, default=DATA, help="the folder holding lspet/ and lsp/ (images/, joints.mat)")
    ap.add_argument("--datasets", nargs="+", choices=list(DATASETS), default=list(DATASETS),
                    help=", ".join(f"{k}: {f} images {a}-{b}" for k, (f, a, b) in DATASETS.items()) + " (default all)")
    ap.add_argument("--protocols", nargs="+", choices=list(PROTOCOLS), default=DEFAULT_PROTOCOLS,
                    help="crop: each model gets our labelled crop; full: the whole image; small: the crop given, "
                         "the person seen at --small px (default: crop full)")
    ap.add_argument("--small", type=at.positive_int, default=64,
                    help="for the small protocol: the person's crop side in pixels (default 64: about 50 px tall)")
    ap.add_argument("--model", default=models.DEFAULT, help="our model: name, checkpoint or engine")
    ap.add_argument("--detector", default=models.DETECTOR,
                    help="our person detector for the full-image protocol: name, checkpoint or engine")
    ap.add_argument("--backend", default="auto", help="our backend for speed (accuracy uses `streampose eval`'s)")
    ap.add_argument("--max-batch", type=int, default=4, help="our runtime's batch limit")
    ap.add_argument("--peers", "--peer", nargs="+", choices=list(PEERS), default=list(PEERS),
                    help="the peers (default all)")
    ap.add_argument("--peer-crop", type=int, default=256, help="side in pixels of the crop a peer gets (crop given)")
    ap.add_argument("--peer-context", type=float, default=1.0,
                    help="the peer's crop side relative to ours, same centre (default 1: the same crop; BlazePose's "
                         "detector finds more people with more context, e.g. 1.6)")
    ap.add_argument("--yolo-imgsz", type=int, default=640, help="YOLO's inference size (default 640; 320 is faster)")
    ap.add_argument("--venv-dir", type=Path, help=f"where peer venvs live, as DIR/<peer>-venv (default {cache_root()})")
    ap.add_argument("--refresh-venv", action="store_true", help="rebuild the peers' venvs")
    ap.add_argument("--json", type=Path, help="write every figure here")
    args = ap.parse_args(argv)
    preset = QUICK if args.quick else FULL
    rounds, frames = args.rounds or preset["rounds"], preset["frames"] if args.frames is None else args.frames
    warmup = preset["warmup"] if args.warmup is None else args.warmup
    images = preset["images"] if args.images is None else args.images
    if args.no_speed and args.no_accuracy:
        ap.error("nothing to do: --no-speed and --no-accuracy")
    for clip in [] if args.no_speed else args.clips:
        if not Path(clip).is_file():
            ap.error(f"clip not found: {clip}")
    protocols = [p for p in PROTOCOLS if p in args.protocols]
    peer_names = list(dict.fromkeys(args.peers))

    with contextlib.ExitStack() as stack:
        full_image = None
        if not args.no_accuracy and "full" in protocols:  # opened first: a missing detector fails before the runs
            detector = stack.enter_context(open_detector(args.detector, backend=eval_backend(args.detector)))
            full_image = stack.enter_context(PoseEstimator(args.model, backend=eval_backend(args.model),
                                                           detector=detector))
        peers = [peer_run(n, ensure_venv(PEERS[n], args.venv_dir, refresh=args.refresh_venv), args.yolo_imgsz)
                 for n in peer_names]
        report: dict[str, Any] = {
            "date": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": machine(),
            "settings": {"rounds": rounds, "frames": frames, "warmup": warmup, "images": images,
                         "max_batch": args.max_batch, "model": args.model, "detector": args.detector,
                         "datasets": args.datasets, "protocols": protocols, "peer_crop": args.peer_crop,
                         "peer_context": args.peer_context, "quick": args.quick, "small": args.small,
                         "peers": {p.peer.name: {"label": p.label, "options": list(p.options),
                                                 "requirements": [*p.peer.requirements, *p.peer.no_deps]}
                                   for p in peers}}}
        speed_rows = [Row(f"streampose {args.model}"), *(Row(p.label) for p in peers)]

        if not args.no_speed:
            log(f"speed: opening {args.model} with backend {args.backend}")
            with PoseEstimator(args.model, backend=args.backend) as est, \
                    open_detector(args.detector, backend=args.backend) as det:
                info = est.backend.info
                speed_rows[0].model = f"streampose {args.model} ({info.name} {info.precision})"
                result = speed(est, det, peers, [str(c) for c in args.clips], rounds, frames, warmup, args.max_batch)
            report["speed"] = {"ours": speed_rows[0].model, "peers": {p.peer.name: p.label for p in peers},
                               "clips": result}
            for name, entry in result.items():
                for row, key in zip(speed_rows, ["ours", *peer_names], strict=True):
                    row.fps[name] = entry[key]["fps"]

        datasets: dict[str, Dataset] = {}
        tables: dict[str, list[Accuracy]] = {}
        if not args.no_accuracy:
            datasets = load_datasets(args.data, args.datasets, images)
            tables = accuracy(datasets, protocols, args.model, full_image, peers, args.peer_crop, args.peer_context,
                              args.small)
            report["accuracy"] = accuracy_json(datasets, peers, tables)

    text = [format_speed(speed_rows, list(report.get("speed", {}).get("clips", {})))]
    for key, rows in tables.items():
        _, first, last = DATASETS[key]
        title = f"{key} {first}-{last}" + (f" (first {len(datasets[key])})" if images else "")
        text.append(format_accuracy(title, rows, protocols))
    first_set = next(iter(tables.values()), [])
    if first_set:
        text.append(footnote(first_set[0], args.detector, args.peer_crop, args.peer_context, args.small))
    print("\n\n".join(t for t in text if t))
    # tools/performance.py plots fps against the first set's crop-given figures
    pck = [row.scores["crop"].report.limbs if "crop" in row.scores else None for row in first_set]
    report["table"] = [{"model": row.model, "fps": row.fps, "pck_limbs": pck[k] if pck else None}
                       for k, row in enumerate(speed_rows)]
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
