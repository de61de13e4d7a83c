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


def _fixed(x: float, y: float) -> tuple[int, int]:
    return (round(min(max(x, -_LIMIT), _LIMIT) * _ONE), round(min(max(y, -_LIMIT), _LIMIT) * _ONE))


def draw_pose(image: npt.NDArray[np.uint8], keypoints: npt.NDArray[Any], joints: JointSet,
              min_conf: float = 0.3, box: tuple[float, float, float, float] | None = None) -> None:
    """Draw a skeleton: limbs in the joint set's edge colours, joints as dots, and the crop `box`.

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
            cv2.rectangle(image, _fixed(x, y), _fixed(x + bw, y + bh), BOX_COLOR, max(1, base // 2), cv2.LINE_AA,
                          SHIFT)
    for (a, b), color in zip(joints.edges, joints.edge_colors, strict=True):
        if ok[a] and ok[b]:
            conf = min(kp[a, 2], kp[b, 2], 1.0)
            cv2.line(image, _fixed(kp[a, 0], kp[a, 1]), _fixed(kp[b, 0], kp[b, 1]), color,
                     max(1, round(base * (0.5 + conf))), cv2.LINE_AA, SHIFT)
    for i, color in enumerate(joints.joint_colors):
        if ok[i]:
            radius = (1.5 * base + 1) * (0.5 + min(kp[i, 2], 1.0) / 2)
            cv2.circle(image, _fixed(kp[i, 0], kp[i, 1]), round(radius * _ONE), color, -1, cv2.LINE_AA, SHIFT)


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
