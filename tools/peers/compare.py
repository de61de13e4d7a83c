"""streampose against other pose models, in one run: speed first, accuracy second.

    python tools/peers/compare.py                      # both default clips, 3 rounds, LSPET accuracy
    python tools/peers/compare.py --quick              # smoke test: 40 frames, 20 images, 1 round
    python tools/peers/compare.py --clips clip.mp4 --rounds 5 --json peers.json --no-accuracy

Peers run in their own virtual environments (see envs.py; created on first use under
~/.cache/streampose/peers), each through a runner script in a subprocess, because their pinned
dependencies conflict with ours (mediapipe 0.10.21 needs numpy < 2 and opencv-contrib).

Speed, per clip, alternating ours / peer rounds so that machine noise hits both alike (medians):
- ours: `PoseStream(clip, max_batch=...)` with the default model and backend (auto), the centered-person
  crop, every result consumed; frames / wall seconds from the first frame read to the last result, with
  the backend opened and warmed up beforehand (model loading is not timed).
- MediaPipe BlazePose full in video (tracking) mode, its fastest real use: the runner's own figure,
  decode + BGR->RGB + inference after a few warm-up frames, its process start-up excluded.
Both read the clip from frame 0 (`--frames N`: the first N frames only) with all cores available.

Accuracy: PCK@0.2 (torso) over the 12 limb joints on LSPET images 8501-9000 with the LSP protocol
of train/evaluate.py. Ours: exactly what `streampose eval` does (torch backend for a named model or
checkpoint). The peer gets the same square crop our model sees (1.25 x the labelled-joint box),
warped to `--peer-crop` pixels (`--peer-context F`: F times its side, same centre; the table then
says so), and its landmarks are mapped back to image pixels; BlazePose's 33
landmarks map onto LSP14 by `MP33_TO_LSP14` (person-centric left/right on both sides). Neck and
head top have no BlazePose counterpart, so only the limbs are compared; an image where the peer
finds no person counts every joint as missed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

import streampose
from streampose import models
from streampose.api import PoseEstimator
from streampose.backends import create, is_engine
from streampose.geometry import crop_transform
from streampose.runtime import PoseStream
from train.datasets import Dataset, load_lsp
from train.evaluate import Report, lsp_pck, score

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # run as a script, the folder is there already; imported, it may not be
    sys.path.insert(0, str(HERE))
from envs import PEERS, Peer, cache_root, ensure_venv  # noqa: E402

ROOT = HERE.parents[1]
DATA = Path(os.environ.get("STREAMPOSE_DATA", ROOT.parent / "shared" / "data"))
DEFAULT_CLIPS = [DATA / "video" / "single_person_studio.mp4", DATA / "video" / "two_people_1080p.mp4"]
LSP_VAL = (8501, 9000)

MP33_TO_LSP14: dict[str, int] = {
    "r_ankle": 28, "r_knee": 26, "r_hip": 24, "l_hip": 23, "l_knee": 25, "l_ankle": 27,
    "r_wrist": 16, "r_elbow": 14, "r_shoulder": 12, "l_shoulder": 11, "l_elbow": 13, "l_wrist": 15,
}
"""LSP14 joint -> BlazePose landmark index. BlazePose's left/right are the person's own, as LSP's
(index 28 is the right ankle). LSP's neck and head_top have no counterpart and stay unscored."""

QUICK = {"frames": 40, "images": 20, "rounds": 1, "warmup": 5}
FULL = {"frames": 0, "images": 0, "rounds": 3, "warmup": 10}


def mp33_to_lsp14(landmarks: npt.ArrayLike | None, names: Sequence[str]) -> npt.NDArray[np.float32]:
    """(33, >=3) BlazePose landmarks (x, y, visibility) -> (len(names), 3) in the order of `names`
    (an LSP14 joint list). Joints without a BlazePose counterpart, and every joint where no person was
    found (`landmarks` None), are NaN, which PCK counts as missed."""
    out = np.full((len(names), 3), np.nan, dtype=np.float32)
    if landmarks is None:
        return out
    lm = np.asarray(landmarks, dtype=np.float32)
    if lm.ndim != 2 or lm.shape[0] != 33 or lm.shape[1] < 3:
        raise ValueError(f"expected (33, 3) BlazePose landmarks, got shape {lm.shape}")
    for i, name in enumerate(names):
        if name in MP33_TO_LSP14:
            out[i] = lm[MP33_TO_LSP14[name], :3]
    return out


@dataclass
class Row:
    """One model's line in the table: median fps per clip (clip name -> fps) and PCK limbs (0..1)."""

    model: str
    fps: dict[str, float] = field(default_factory=dict)
    pck_limbs: float | None = None


def ratio(ours: float | None, peer: float | None) -> float | None:
    """ours / peer, where both are known and the peer's is positive."""
    return ours / peer if ours is not None and peer else None


def format_table(rows: Sequence[Row], clips: Sequence[str]) -> str:
    """The comparison table. The first row is ours; each peer's fps cell adds `(ours / peer)`."""
    if not rows:
        return ""
    ours = rows[0]
    cells = [["model", *(f"{c} fps" for c in clips), "PCK@0.2 limbs"]]
    for k, row in enumerate(rows):
        line = [row.model]
        for c in clips:
            fps = row.fps.get(c)
            r = ratio(ours.fps.get(c), fps) if k else None
            line.append("-" if fps is None else f"{fps:.1f}" + (f" ({r:.2f}x)" if r is not None else ""))
        line.append("-" if row.pck_limbs is None else f"{100 * row.pck_limbs:.1f} %")
        cells.append(line)
    widths = [max(len(r[i]) for r in cells) for i in range(len(cells[0]))]
    out = [cells[0][0].ljust(widths[0]) + "".join(f"  {h:>{w}}" for h, w in zip(cells[0][1:], widths[1:], strict=True))]
    out.append("-" * len(out[0]))
    for line in cells[1:]:
        out.append(line[0].ljust(widths[0]) + "".join(f"  {v:>{w}}" for v, w in zip(line[1:], widths[1:], strict=True)))
    out.append("(Nx) = ours / that model, same clip, medians of alternating rounds")
    return "\n".join(out)


def log(msg: str) -> None:
    print(f"peers: {msg}", file=sys.stderr, flush=True)


# --- speed ---------------------------------------------------------------------------------------
def ours_speed(estimator: PoseEstimator, clip: str, frames: int, max_batch: int) -> tuple[int, float]:
    """(frames, wall seconds) of one pass through `PoseStream`, consuming every result."""
    n = 0
    with PoseStream(clip, estimator=estimator, max_batch=max_batch) as stream:
        t0 = time.perf_counter()
        for _ in stream:
            n += 1
            if frames and n >= frames:
                break
        seconds = time.perf_counter() - t0
    return n, seconds


def run_peer(python: Path, peer: Peer, args: Sequence[str], timeout: float) -> list[str]:
    """The runner's stdout lines; RuntimeError with the end of its stderr if it fails."""
    runner = HERE / peer.runner
    proc = subprocess.run([str(python), str(runner), *args], capture_output=True, text=True, timeout=timeout,
                          check=False)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"{peer.name} runner {' '.join(args[:1])} failed (exit {proc.returncode}):\n{tail}")
    return [line for line in proc.stdout.splitlines() if line.strip()]


def peer_speed(python: Path, peer: Peer, clip: str, frames: int, warmup: int) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(run_peer(python, peer, ["speed", clip, "--frames", str(frames),
                                                            "--warmup", str(warmup)], timeout=1800)[-1])
    return out


def speed(estimator: PoseEstimator, python: Path | None, peer: Peer, clips: Sequence[str], rounds: int, frames: int,
          warmup: int, max_batch: int) -> dict[str, dict[str, Any]]:
    """Per clip: ours and the peer, alternating, `rounds` each; medians and every round."""
    result: dict[str, dict[str, Any]] = {}
    for clip in clips:
        name = Path(clip).stem
        ours_fps, peer_fps, peer_runs, ours_frames = [], [], [], 0
        ours_speed(estimator, clip, max(warmup, max_batch), max_batch)  # warm-up, not timed
        for r in range(rounds):
            ours_frames, sec = ours_speed(estimator, clip, frames, max_batch)
            ours_fps.append(ours_frames / sec)
            log(f"{name} round {r + 1}/{rounds}: streampose {ours_fps[-1]:.1f} fps ({ours_frames} frames)")
            if python is not None:
                run = peer_speed(python, peer, clip, frames, warmup)
                peer_runs.append(run)
                peer_fps.append(float(run["fps"]))
                log(f"{name} round {r + 1}/{rounds}: {peer.name} {run['fps']:.1f} fps ({run['frames']} frames, "
                    f"person found in {run['detected']})")
        entry: dict[str, Any] = {"clip": clip, "ours": {"fps": statistics.median(ours_fps), "rounds": ours_fps,
                                                       "frames": ours_frames}}
        if peer_fps:
            last = peer_runs[-1]
            entry[peer.name] = {"fps": statistics.median(peer_fps), "rounds": peer_fps, "frames": last["frames"],
                                "detected": [run["detected"] for run in peer_runs], "versions": last["versions"]}
            entry["ratio"] = ratio(entry["ours"]["fps"], entry[peer.name]["fps"])
        result[name] = entry
    return result


# --- accuracy ------------------------------------------------------------------------------------
def ours_accuracy(model: str, dataset: Dataset) -> tuple[Report, str]:
    """`streampose eval` on `dataset`: its Report and the backend used."""
    ckpt = model if is_engine(model) else streampose.load_model(model, joints=dataset.joints)
    with create("auto" if is_engine(model) else "torch", ckpt) as backend:
        report = score(backend, dataset, progress=False)
        return report, f"{backend.info.name} {backend.info.precision}"


def peer_items(dataset: Dataset, size: int, context: float = 1.0) -> list[dict[str, Any]]:
    """What the peer runner crops: each image with the image->crop affine of our own crop (its side
    times `context`, same centre), resampled to `size` px."""
    return [{"image": str(a.image), "affine": crop_transform(a.center, a.scale * context, size).tolist(),
             "size": size} for a in dataset.items]


def peer_accuracy(python: Path, peer: Peer, dataset: Dataset, size: int, context: float = 1.0
                  ) -> tuple[Report, int]:
    """The peer's LSP Report (limbs only meaningful) and the number of images where it found a person."""
    with tempfile.TemporaryDirectory() as tmp:
        items = Path(tmp) / "items.json"
        items.write_text(json.dumps(peer_items(dataset, size, context)))
        lines = run_peer(python, peer, ["lsp", str(items)], timeout=3600)
    found: dict[int, Any] = {}
    for line in lines:
        row = json.loads(line)
        found[int(row["i"])] = row["landmarks"]
    if len(found) != len(dataset.items):
        raise RuntimeError(f"{peer.name} runner returned {len(found)} results for {len(dataset.items)} images")
    names = dataset.joints.names
    pred = np.stack([mp33_to_lsp14(found[i], names) for i in range(len(dataset.items))])
    return lsp_pck(pred, dataset), sum(v is not None for v in found.values())


# --- the command ---------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "os": platform.platform()}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", nargs="+", default=[str(c) for c in DEFAULT_CLIPS], help="videos timed for speed")
    ap.add_argument("--rounds", type=int, help=f"alternating rounds per clip (default {FULL['rounds']})")
    ap.add_argument("--frames", type=int, help="time the first N frames of each clip (default 0: all of it)")
    ap.add_argument("--warmup", type=int, help=f"untimed warm-up frames (default {FULL['warmup']})")
    ap.add_argument("--images", type=int, help="score the first N LSPET validation images (default 0: all 500)")
    ap.add_argument("--quick", action="store_true",
                    help=f"smoke test: {QUICK['frames']} frames, {QUICK['images']} images, {QUICK['rounds']} round")
    ap.add_argument("--no-accuracy", action="store_true", help="speed only")
    ap.add_argument("--no-speed", action="store_true", help="accuracy only")
    ap.add_argument("--lsp", type=Path, default=DATA / "lspet", help="the LSPET folder (images/, joints.mat)")
    ap.add_argument("--model", default=models.DEFAULT, help="our model: name, checkpoint or engine")
    ap.add_argument("--backend", default="auto", help="our backend for speed (accuracy uses `streampose eval`'s)")
    ap.add_argument("--max-batch", type=int, default=4, help="our runtime's batch limit")
    ap.add_argument("--peer", default="mediapipe", choices=list(PEERS))
    ap.add_argument("--peer-crop", type=int, default=256, help="side in pixels of the crop the peer gets (accuracy)")
    ap.add_argument("--peer-context", type=float, default=1.0,
                    help="the peer's crop side relative to ours, same centre (default 1: the same crop; BlazePose's "
                         "detector finds more people with more context, e.g. 1.6)")
    ap.add_argument("--venv-dir", type=Path, help=f"where peer venvs live, as DIR/<peer>-venv (default {cache_root()})")
    ap.add_argument("--refresh-venv", action="store_true", help="rebuild the peer's venv")
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

    peer = PEERS[args.peer]
    python = ensure_venv(peer, args.venv_dir, refresh=args.refresh_venv)
    clips = [str(c) for c in args.clips]
    report: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": machine(),
                              "settings": {"rounds": rounds, "frames": frames, "warmup": warmup, "images": images,
                                           "max_batch": args.max_batch, "peer_crop": args.peer_crop,
                                           "peer_context": args.peer_context,
                                           "quick": args.quick}}
    context = "" if args.no_accuracy or args.peer_context == 1 else f" (crop x{args.peer_context:g})"
    ours_row, peer_row = Row(f"streampose {args.model}"), Row(peer.label + context)

    if not args.no_speed:
        log(f"speed: opening {args.model} with backend {args.backend}")
        with PoseEstimator(args.model, backend=args.backend) as est:
            info = est.backend.info
            ours_row.model = f"streampose {args.model} ({info.name} {info.precision})"
            result = speed(est, python, peer, clips, rounds, frames, warmup, args.max_batch)
        report["speed"] = {"ours": ours_row.model, "peer": peer.label, "clips": result}
        for name, entry in result.items():
            ours_row.fps[name] = entry["ours"]["fps"]
            if peer.name in entry:
                peer_row.fps[name] = entry[peer.name]["fps"]

    if not args.no_accuracy:
        dataset = load_lsp(args.lsp, *LSP_VAL)
        if images:
            dataset = dataset.head(images)
        log(f"accuracy: {len(dataset)} images of {dataset.name}, ours")
        ours_rep, used = ours_accuracy(args.model, dataset)
        log(f"accuracy: {peer.name} on the same crops x {args.peer_context:g} ({args.peer_crop} px)")
        peer_rep, detected = peer_accuracy(python, peer, dataset, args.peer_crop, args.peer_context)
        ours_row.pck_limbs, peer_row.pck_limbs = ours_rep.limbs, peer_rep.limbs
        limbs = list(MP33_TO_LSP14)
        report["accuracy"] = {
            "data": dataset.name, "metric": ours_rep.metric, "images": ours_rep.images, "skipped": ours_rep.skipped,
            "ours": {"backend": used, "limbs": ours_rep.limbs, "all": ours_rep.all, "per_joint": ours_rep.per_joint},
            peer.name: {"limbs": peer_rep.limbs, "per_joint": {n: peer_rep.per_joint[n] for n in limbs},
                        "person_found": detected, "crops": len(dataset), "crop_px": args.peer_crop,
                        "crop_context": args.peer_context},
        }

    names = list(report.get("speed", {}).get("clips", {}))
    table = format_table([ours_row, peer_row], names)
    print(table)
    if "accuracy" in report:
        acc = report["accuracy"]
        print(f"PCK: {acc['metric']} over the 12 limb joints, {acc['images']} of {acc['data']} scored "
              f"({acc['skipped']} skipped: torso unlabelled); ours with {acc['ours']['backend']}; "
              f"{peer.name} found a person in {acc[peer.name]['person_found']} of {acc[peer.name]['crops']} crops")
    report["table"] = [{"model": r.model, "fps": r.fps, "pck_limbs": r.pck_limbs} for r in (ours_row, peer_row)]
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
