"""MediaPipe BlazePose (full), run inside its own venv by tools/peers/compare.py.

Imports only mediapipe, numpy and cv2 from the peer venv (never streampose). Uses the legacy
solutions API, `mp.solutions.pose.Pose(model_complexity=1)`: the "full" landmark model ships inside
the wheel; lite (0) and heavy (2) are downloaded on first use and so do not work offline.

    python mediapipe_runner.py speed CLIP [--frames N] [--warmup W]
        One JSON line: {fps, frames, seconds, detected, ...}. Video (tracking) mode, its fastest real
        use. W frames warm the graph up first; then the tracker is reset and frames 0..N-1 of the clip
        (N = 0: all) are timed end to end: decode (cv2.VideoCapture), BGR->RGB, inference.
    python mediapipe_runner.py landmarks ITEMS_JSON
        ITEMS_JSON: a list of {"image": path}, each the whole image, or {"image": path, "affine": 2x3
        image->crop matrix, "size": crop side[, "shrink": k]}, the image (first shrunk k times and enlarged
        back, a person far from the camera) warped to that square crop. Each is run in
        static-image mode and the 33 landmarks are mapped back to image pixels: one JSON line per item,
        {"i", "landmarks": [[x, y, visibility] x 33] or null where no person was found}.

Pixel centres sit at integer coordinates (OpenCV's convention, as in streampose): MediaPipe's
normalised x (0..1 across the image's width) becomes x * width - 0.5.

The clip timing and the crops are shared with yolo_runner.py (it imports them from here), so every peer
is timed alike and sees the same pixels.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

MODEL_COMPLEXITY = 1  # "full": the only BlazePose landmark model inside the wheel
Frame = npt.NDArray[Any]
"""A BGR image as OpenCV reads it."""


def mediapipe() -> Any:
    """The mediapipe module: installed only in the peer venv, so untyped here and imported late."""
    import mediapipe as mp  # type: ignore[import-not-found]

    return mp


def open_pose(static: bool) -> Any:
    return mediapipe().solutions.pose.Pose(static_image_mode=static, model_complexity=MODEL_COMPLEXITY)


def versions() -> dict[str, str]:
    return {"mediapipe": str(mediapipe().__version__), "numpy": np.__version__, "opencv": str(cv2.__version__)}


def landmarks_px(result: Any, width: int, height: int) -> npt.NDArray[np.float64] | None:
    """(33, 3): x, y in pixels (centres at integers), visibility; None where no person was found."""
    if result.pose_landmarks is None:
        return None
    lm = result.pose_landmarks.landmark
    return np.array([[p.x * width - 0.5, p.y * height - 0.5, p.visibility] for p in lm], dtype=np.float64)


def crop_to_image(points: npt.NDArray[np.float64], affine: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Map (K, >=2) crop points back through the inverse of the 2x3 image->crop `affine`."""
    inv = np.asarray(cv2.invertAffineTransform(np.asarray(affine, dtype=np.float64)), dtype=np.float64)
    out = np.array(points, dtype=np.float64)
    out[:, :2] = out[:, :2] @ inv[:, :2].T + inv[:, 2]
    return out


def read_image(path: str) -> Frame:
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise SystemExit(f"{Path(sys.argv[0]).name}: cannot read {path}")
    return np.asarray(img)


def time_clip(clip: str, frames: int, warmup: int, process: Callable[[Frame], bool],
              reset: Callable[[], None] = lambda: None) -> dict[str, Any]:
    """`process` (BGR frame -> person found) on `warmup` untimed frames, then `reset`, then frames 0..N-1
    of the clip (N = `frames`, 0: all) timed end to end, decoding (cv2.VideoCapture) included."""
    cap = cv2.VideoCapture(clip)
    if not cap.isOpened():
        raise SystemExit(f"{Path(sys.argv[0]).name}: cannot open {clip}")
    size = [int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))]
    for _ in range(warmup):  # graph set-up, weight packing, first detections: not timed
        ok, img = cap.read()
        if not ok:
            break
        process(img)
    cap.release()
    reset()
    cap = cv2.VideoCapture(clip)
    n = detected = 0
    t0 = time.perf_counter()
    while not frames or n < frames:
        ok, img = cap.read()
        if not ok:
            break
        detected += process(img)
        n += 1
    seconds = time.perf_counter() - t0
    cap.release()
    return {"mode": "speed", "clip": clip, "size": size, "frames": n, "seconds": seconds,
            "fps": n / seconds if seconds > 0 else 0.0, "detected": detected, "warmup": warmup}


def speed(clip: str, frames: int, warmup: int) -> dict[str, Any]:
    pose = open_pose(static=False)

    def found(img: Frame) -> bool:
        return pose.process(cv2.cvtColor(img, cv2.COLOR_BGR2RGB)).pose_landmarks is not None

    # the timed pass starts from frame 0 with a fresh tracker (`reset`), as a new stream would
    out = time_clip(clip, frames, warmup, found, pose.reset)
    pose.close()
    return {**out, "static_image_mode": False, "model_complexity": MODEL_COMPLEXITY, "versions": versions()}


def shrunk(img: Frame, k: float) -> Frame:
    """The image shrunk k times (area-averaged) and enlarged back (bilinear): a person far from the camera, as
    streampose's `train.evaluate.shrunk` shows them to its own model. k >= 1: unchanged."""
    if k >= 1:
        return img
    h, w = img.shape[:2]
    small = cv2.resize(img, (max(1, round(w * k)), max(1, round(h * k))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def print_landmarks(items_json: str, find: Callable[[Frame], npt.NDArray[np.float64] | None]
                    ) -> None:
    """One JSON line per item of ITEMS_JSON: what `find` (BGR image -> (K, >=2) points in its pixels, or None)
    returns for the item's input, the whole image or its crop, mapped back to image pixels."""
    with open(items_json, encoding="utf-8") as f:
        items = json.load(f)
    for i, item in enumerate(items):
        img = shrunk(read_image(item["image"]), float(item.get("shrink", 1.0)))
        affine = item.get("affine")
        if affine is not None:
            size = int(item["size"])
            img = cv2.warpAffine(img, np.asarray(affine, dtype=np.float64), (size, size), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_CONSTANT)
        points = find(img)
        if points is not None and affine is not None:
            points = crop_to_image(points, affine)
        print(json.dumps({"i": i, "landmarks": None if points is None else points.round(3).tolist()}), flush=True)


def landmarks(items_json: str) -> None:
    pose = open_pose(static=True)

    def find(img: Frame) -> npt.NDArray[np.float64] | None:
        return landmarks_px(pose.process(cv2.cvtColor(img, cv2.COLOR_BGR2RGB)), img.shape[1], img.shape[0])

    print_landmarks(items_json, find)
    pose.close()


def runner_parser(doc: str | None, speed_help: str, landmarks_help: str
                  ) -> tuple[argparse.ArgumentParser, list[argparse.ArgumentParser]]:
    """A peer runner's command line, the same for every peer: `speed CLIP` and `landmarks ITEMS_JSON`; returns
    the parser and its two sub-parsers, for options of the peer's own."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)
    sp = sub.add_parser("speed", help=speed_help)
    sp.add_argument("clip")
    sp.add_argument("--frames", type=int, default=0, help="frames to time from the start (0: the whole clip)")
    sp.add_argument("--warmup", type=int, default=10, help="untimed frames first")
    lp = sub.add_parser("landmarks", help=landmarks_help)
    lp.add_argument("items_json")
    return ap, [sp, lp]


def main() -> None:
    ap, _ = runner_parser(__doc__, "end-to-end fps on a clip, video (tracking) mode",
                          "landmarks in whole images or square crops of them, static-image mode")
    args = ap.parse_args()
    if args.mode == "speed":
        print(json.dumps(speed(args.clip, args.frames, args.warmup)), flush=True)
    else:
        landmarks(args.items_json)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
