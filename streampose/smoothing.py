"""Temporal smoothing of keypoints: the One-Euro filter (Casiez, Roussel and Vogel, CHI 2012).

A low-pass filter whose cutoff rises with speed: a still joint is smoothed hard (no jitter) and a
moving one lightly (little lag). Per frame it is a handful of vector operations over all joints.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]

STILL_DT = 1.0 / 30.0
"""The time step assumed between frames that carry no time (still images)."""


def _alpha(cutoff: F64 | float, dt: float) -> F64:
    """Weight of the new sample in an exponential filter with this cutoff (Hz) at this step (s)."""
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff, dtype=np.float64))
    return np.asarray(1.0 / (1.0 + tau / dt), dtype=np.float64)


class OneEuro:
    """Smooths one person's keypoints over time; one filter per stream.

    `min_cutoff` (Hz) sets the smoothing of a still joint: 1 Hz removes most frame-to-frame jitter
    at 25-60 fps, at the price of ~0.15 s lag on slow drifts. `beta` (per pixel) raises the cutoff
    with speed, in pixels per second: at the default 0.01 a joint moving at 500 px/s (a brisk arm
    swing in a 720p frame) is filtered at 6 Hz, so fast motion is followed closely; scale it
    inversely with the frame size. `d_cutoff` (Hz) smooths the speed estimate itself (the paper's 1 Hz).

    Joints below `min_conf` are passed through as measured, and their filter restarts when they are
    seen again: the network's guess for an unseen joint jumps about, and it should neither drag the
    filter away nor be where the filter starts from, nor hold the joint at a stale place.
    """

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.01, d_cutoff: float = 1.0,
                 min_conf: float = 0.1) -> None:
        if min_cutoff <= 0 or d_cutoff <= 0 or beta < 0:
            raise ValueError(f"need min_cutoff > 0, d_cutoff > 0 and beta >= 0, got {min_cutoff}, {d_cutoff}, {beta}")
        self.min_cutoff, self.beta, self.d_cutoff, self.min_conf = min_cutoff, beta, d_cutoff, min_conf
        self.reset()

    def reset(self) -> None:
        """Forget the past: the next call returns its keypoints unchanged (a new clip, a seek)."""
        self._xy: F64 | None = None
        self._speed: F64 | None = None  # (K, 2) smoothed velocity, px/s
        self._seen: npt.NDArray[np.bool_] | None = None  # (K, 1) joints at min_conf or more last frame
        self._t = 0.0

    def __call__(self, keypoints: npt.NDArray[np.float32], t: float | None = None) -> npt.NDArray[np.float32]:
        """The smoothed (K, 3) keypoints of the frame at media time `t` (seconds; None: still images,
        taken 1/30 s apart). Confidence is passed through. Time that does not move forward (a seek,
        a loop, a duplicate timestamp) restarts the filter rather than divide by a zero step."""
        out: npt.NDArray[np.float32] = np.array(keypoints, dtype=np.float32)
        xy = out[:, :2].astype(np.float64)
        now = self._t + STILL_DT if t is None else float(t)
        dt = now - self._t
        self._t = now
        seen = out[:, 2:3] >= self.min_conf
        if self._xy is None or self._speed is None or self._seen is None or self._xy.shape != xy.shape or dt <= 0:
            self._xy, self._speed, self._seen = xy, np.zeros_like(xy), seen
            return out
        speed = (xy - self._xy) / dt
        speed = self._speed + _alpha(self.d_cutoff, dt) * (speed - self._speed)
        cutoff = self.min_cutoff + self.beta * np.linalg.norm(speed, axis=1, keepdims=True)
        smoothed = self._xy + _alpha(cutoff, dt) * (xy - self._xy)
        tracked = seen & self._seen
        self._xy = np.where(tracked, smoothed, xy)
        self._speed = np.where(tracked, speed, 0.0)
        self._seen = seen
        out[:, :2] = self._xy
        return out
