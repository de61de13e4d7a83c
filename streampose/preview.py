"""Frame previews for viewers (`streampose run --preview`): small JPEGs of some frames, beside the poses.

A viewer in a browser needs the picture under the skeleton, but the run must not pay for it: each stream offers
every frame, at most `fps` a second are taken, and one thread downscales (at most `MAX_WIDTH` wide) and encodes
them with OpenCV, newest first: a frame offered while the last is still being encoded replaces the one waiting.
The caller sends what is ready from its own thread (`take`), because ZeroMQ sockets are not thread-safe.
"""

from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import numpy.typing as npt

from streampose.sources import Frame
from streampose.wire import PreviewMessage

MAX_WIDTH = 640
QUALITY = 70
"""JPEG quality: a 640 x 360 preview is ~25-40 kB."""
DEFAULT_FPS = 10.0


def preview_jpeg(image: npt.NDArray[np.uint8], max_width: int = MAX_WIDTH, quality: int = QUALITY) -> bytes:
    """A BGR image as JPEG bytes, shrunk (area averaging) to at most `max_width` pixels wide."""
    h, w = image.shape[:2]
    if w > max_width:
        image = np.asarray(cv2.resize(image, (max_width, max(1, round(h * max_width / w))),
                                      interpolation=cv2.INTER_AREA), dtype=np.uint8)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError(f"OpenCV could not encode a {w}x{h} preview as JPEG")
    return buf.tobytes()


class PreviewEncoder:
    """Takes at most `fps` frames a second per stream and encodes them on its own thread; `take` returns the
    previews ready since the last call (the newest per stream). Use as a context manager, or call `close`."""

    def __init__(self, fps: float = DEFAULT_FPS, max_width: int = MAX_WIDTH) -> None:
        if not 0 < fps <= 1000:
            raise ValueError(f"preview fps must be in (0, 1000], got {fps:g}")
        self.interval, self.max_width = 1.0 / fps, max_width
        self.encoded = 0
        self._due: dict[str, float] = {}
        self._waiting: dict[str, Frame] = {}
        self._ready: dict[str, PreviewMessage] = {}
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._work, name="streampose-preview", daemon=True)
        self._thread.start()

    def offer(self, stream: str, frame: Frame) -> None:
        """This frame of `stream`, if a preview is due; returns at once."""
        now = time.monotonic()
        if now < self._due.get(stream, 0.0):
            return
        self._due[stream] = now + self.interval
        with self._cond:
            self._waiting[stream] = frame
            self._cond.notify()

    def take(self) -> list[PreviewMessage]:
        with self._cond:
            out = list(self._ready.values())
            self._ready.clear()
        return out

    def _work(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._waiting or self._closed)
                if self._closed:
                    return
                stream = next(iter(self._waiting))
                frame = self._waiting.pop(stream)
            w, h = frame.size
            msg = PreviewMessage(stream, frame.index, frame.pts, frame.t_capture, (w, h),
                                 preview_jpeg(frame.image, self.max_width))
            with self._cond:
                self._ready[stream] = msg
                self.encoded += 1

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join()

    def __enter__(self) -> PreviewEncoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
