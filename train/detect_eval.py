"""How well the person detector finds people: top-1 recall on whole validation images, and recall and false
positives on zoomed-out composites (several small people in a 1280 x 720 frame), with the time per frame."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from streampose.detect import iou
from streampose.detector import PersonDetector
from streampose.sources import read_image
from train.datasets import Dataset, labelled
from train.detect_data import annotation_box

F64 = npt.NDArray[np.float64]
U8 = npt.NDArray[np.uint8]
IOU = 0.5


@dataclass(frozen=True)
class DetectReport:
    data: str
    images: int
    recall: float
    """Share of images whose most confident detection overlaps the person box by IoU >= 0.5."""
    found: float
    """Share of images with any detection above the threshold."""
    mean_iou: float
    """Mean IoU of the most confident detection (0 where none)."""
    ms_per_frame: float
    complete: int = 0
    """Images whose person has every joint labelled: the others' box covers only the labelled joints (LSPET
    leaves joints out of frame or hidden unlabelled), so a detector boxing the whole person misses it there."""
    complete_recall: float | None = None
    """Top-1 recall over those images alone (None without any: JSON has no NaN)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        text = (f"{self.data}: top-1 recall@{IOU} {100 * self.recall:.1f} %, found {100 * self.found:.1f} %, "
                f"mean IoU {self.mean_iou:.3f} ({self.images} images, {self.ms_per_frame:.1f} ms/frame)")
        if self.complete_recall is not None and self.complete < self.images:
            text += (f"; {100 * self.complete_recall:.1f} % on the {self.complete} whose person has every joint "
                     "labelled")
        return text


def top1(detector: PersonDetector, data: Dataset, progress: bool = True) -> DetectReport:
    """Top-1 recall at IoU 0.5 against each annotation's person box, one whole image at a time."""
    hits, found, ious, seconds, complete, complete_hits = 0, 0, [], 0.0, 0, 0
    for a in tqdm(data.items, desc=f"detect {data.name}", unit="img", disable=not progress or None):
        image = read_image(a.image)
        t0 = time.perf_counter()
        boxes = detector(image)
        seconds += time.perf_counter() - t0
        gt = annotation_box(a, image.shape[1], image.shape[0])
        v = float(iou(boxes[:1], gt[None])[0, 0]) if len(boxes) else 0.0
        found += bool(len(boxes))
        hits += v >= IOU
        ious.append(v)
        if labelled(a).all():
            complete += 1
            complete_hits += v >= IOU
    n = max(len(data.items), 1)
    return DetectReport(data.name, len(data.items), hits / n, found / n, float(np.mean(ious)) if ious else 0.0,
                        1000 * seconds / n, complete, complete_hits / complete if complete else None)


@dataclass(frozen=True)
class CompositeReport:
    frames: int
    people: int
    recall: float
    """Share of pasted people matched (IoU >= 0.5, one detection each)."""
    false_positives: float
    """Unmatched detections per frame."""
    ms_per_frame: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        return (f"composites ({self.frames} frames 1280x720, {self.people} people 40-120 px tall): recall "
                f"{100 * self.recall:.1f} %, {self.false_positives:.2f} false positives per frame, "
                f"{self.ms_per_frame:.1f} ms/frame")


def composite(rng: np.random.Generator, data: Dataset, size: tuple[int, int] = (1280, 720),
              heights: tuple[float, float] = (40, 120), people: tuple[int, int] = (1, 4)) -> tuple[U8, F64]:
    """A grey frame with 1-4 validation images pasted at random places, scaled so each person box is 40-120 px
    tall (a crowd far from the camera), not overlapping; returns the frame and the person boxes."""
    w, h = size
    frame = np.full((h, w, 3), 114, np.uint8)
    boxes: list[list[float]] = []
    taken: list[tuple[float, float, float, float]] = []
    for _ in range(int(rng.integers(people[0], people[1] + 1))):
        a = data.items[int(rng.integers(len(data.items)))]
        image = read_image(a.image)
        b = annotation_box(a, image.shape[1], image.shape[0])
        s = float(rng.uniform(*heights)) / b[3]
        small = cv2.resize(image, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
        sh, sw = small.shape[:2]
        for _try in range(20):
            x, y = int(rng.integers(0, max(w - sw, 1))), int(rng.integers(0, max(h - sh, 1)))
            if all(x + sw <= tx or tx + tw <= x or y + sh <= ty or ty + th <= y for tx, ty, tw, th in taken):
                break
        else:
            continue
        frame[y:y + sh, x:x + sw] = small[: h - y, : w - x]
        taken.append((x, y, sw, sh))
        boxes.append([x + b[0] * s, y + b[1] * s, b[2] * s, b[3] * s])
    return frame, np.array(boxes, dtype=np.float64).reshape(-1, 4)


def composites(detector: PersonDetector, data: Dataset, frames: int = 200, seed: int = 0,
               progress: bool = True) -> CompositeReport:
    """Recall and false positives per frame on `frames` zoomed-out composites (greedy matching, best first)."""
    rng = np.random.default_rng(seed)
    matched = total = false = 0
    seconds = 0.0
    for _ in tqdm(range(frames), desc="composites", unit="frame", disable=not progress or None):
        frame, gt = composite(rng, data)
        t0 = time.perf_counter()
        boxes = detector(frame)
        seconds += time.perf_counter() - t0
        free = np.ones(len(gt), bool)
        for d in boxes:
            v = iou(d[None], gt)[0] * free if len(gt) else np.zeros(0)
            if len(v) and v.max() >= IOU:
                free[int(v.argmax())] = False
                matched += 1
            else:
                false += 1
        total += len(gt)
    return CompositeReport(frames, total, matched / max(total, 1), false / max(frames, 1), 1000 * seconds / frames)
