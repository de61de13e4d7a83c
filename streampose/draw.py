"""Drawing poses and a status overlay into BGR uint8 images, in place.

Pure functions apart from inference, so recordings, windows and user code draw the same way.
Positions are sub-pixel: they go to OpenCV as fixed-point numbers (`shift`), so a skeleton does
not jitter by truncation from frame to frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from streampose.joints import JointSet

SHIFT = 4
"""Fractional bits of the coordinates handed to OpenCV (1/16 pixel)."""
_ONE = 1 << SHIFT
_LIMIT = 1e6
"""Coordinates are clipped to +-this many pixels so a wild prediction cannot overflow OpenCV's ints."""
BOX_COLOR = (200, 200, 200)
HUD_FONT = cv2.FONT_HERSHEY_SIMPLEX
PEOPLE_COLORS: tuple[tuple[int, int, int], ...] = (
    (0, 200, 255), (255, 100, 50), (80, 220, 80), (200, 80, 255), (255, 220, 0), (0, 90, 255), (180, 180, 255),
    (255, 0, 160),
)
"""BGR colours that tell people apart (by id, cycling), when a frame holds several."""


def person_color(person: int) -> tuple[int, int, int]:
    """The colour of a person id."""
    return PEOPLE_COLORS[person % len(PEOPLE_COLORS)]


def _fixed(x: float, y: float) -> tuple[int, int]:
    return (round(min(max(x, -_LIMIT), _LIMIT) * _ONE), round(min(max(y, -_LIMIT), _LIMIT) * _ONE))


def draw_pose(image: npt.NDArray[np.uint8], keypoints: npt.NDArray[Any], joints: JointSet,
              min_conf: float = 0.3, box: tuple[float, float, float, float] | None = None,
              color: tuple[int, int, int] | None = None, label: str | None = None) -> None:
    """Draw a skeleton: limbs in the joint set's edge colours (or all in `color`, to tell people apart), joints
    as dots, and the crop `box` with `label` (a person id) at its corner.

    Joints below `min_conf` (or with non-finite positions) are left out with their limbs; the
    others are drawn thinner and smaller the less confident they are, so doubtful parts read as
    such. Line widths follow the image size, so a 240p and a 1080p frame look alike."""
    h, w = image.shape[:2]
    base = max(1, round(min(h, w) / 200))
    kp = np.asarray(keypoints, dtype=np.float64)
    ok = np.isfinite(kp[:, :3]).all(axis=1) & (kp[:, 2] >= min_conf)
    if box is not None:
        x, y, bw, bh = box
        if np.isfinite([x, y, bw, bh]).all():
            cv2.rectangle(image, _fixed(x, y), _fixed(x + bw, y + bh), color or BOX_COLOR, max(1, base // 2),
                          cv2.LINE_AA, SHIFT)
            if label:
                scale = max(0.35, h / 1200)
                at = (round(min(max(x, 0), w - 1)) + 2, round(min(max(y, 0), h - 1)) + round(22 * scale) + 2)
                cv2.putText(image, label, at, HUD_FONT, scale, color or BOX_COLOR, max(1, round(scale * 1.5)),
                            cv2.LINE_AA)
    edge_colors = joints.edge_colors if color is None else (color,) * len(joints.edges)
    for (a, b), c in zip(joints.edges, edge_colors, strict=True):
        if ok[a] and ok[b]:
            conf = min(kp[a, 2], kp[b, 2], 1.0)
            cv2.line(image, _fixed(kp[a, 0], kp[a, 1]), _fixed(kp[b, 0], kp[b, 1]), c,
                     max(1, round(base * (0.5 + conf))), cv2.LINE_AA, SHIFT)
    for i, c in enumerate(joints.joint_colors):
        if ok[i]:
            radius = (1.5 * base + 1) * (0.5 + min(kp[i, 2], 1.0) / 2)
            cv2.circle(image, _fixed(kp[i, 0], kp[i, 1]), round(radius * _ONE), c, -1, cv2.LINE_AA, SHIFT)


def draw_hud(image: npt.NDArray[np.uint8], lines: Sequence[str]) -> None:
    """Text lines at the top left on a darkened box; the font follows the image height, so the
    overlay stays legible at 240p and about the same share of the frame at 1080p."""
    if not lines:
        return
    h, w = image.shape[:2]
    scale = max(0.35, h / 900)
    thickness = max(1, round(scale * 1.5))
    pad = max(2, round(6 * scale))
    sizes = [cv2.getTextSize(text, HUD_FONT, scale, thickness) for text in lines]
    step = max(th + baseline for (_, th), baseline in sizes) + pad
    box_w = min(w, max(tw for (tw, _), _ in sizes) + 2 * pad)
    box_h = min(h, step * len(lines) + pad)
    region = image[:box_h, :box_w]
    region[:] = cv2.convertScaleAbs(region, alpha=0.4)  # 60% towards black
    for n, (text, ((_, th), _)) in enumerate(zip(lines, sizes, strict=True)):
        cv2.putText(image, text, (pad, pad + n * step + th), HUD_FONT, scale, (255, 255, 255), thickness,
                    cv2.LINE_AA)
