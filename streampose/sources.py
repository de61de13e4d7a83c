"""Where frames come from: image files and folders, video files, network streams and cameras.

Every source yields `Frame`s in order with their index, presentation time and wall-clock capture
time. Sources are either *file* sources (every frame exactly once, in order; the runtime applies
back-pressure) or *live* sources (cameras, network streams, or a file played at its native rate
with `realtime=True`; the runtime keeps only the newest frame and counts the ones it drops).

    with open_source("clip.mp4") as src:
        for frame in src: ...
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import cached_property
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from streampose.preprocess import YUV420, Image

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.I)
NETWORK_TIMEOUT_S = 10.0
MAX_DAMAGED = 1000
"""Damaged packets skipped in one source before it is given up as unreadable."""


class SourceError(RuntimeError):
    """A source that cannot be opened or read; the message names the source and the problem."""


@dataclass(frozen=True)
class Reconnect:
    """How the runtime retries a camera or network stream that fails or stops delivering: up to
    `attempts` reopenings, waiting `delay` seconds before the first and doubling up to `max_delay`.
    A network read that waits `timeout` seconds for data counts as a failure."""

    attempts: int = 5
    delay: float = 0.5
    max_delay: float = 8.0
    timeout: float = NETWORK_TIMEOUT_S

    def wait(self, attempt: int) -> float:
        """Seconds to wait before reopening, for attempt 1, 2, ..."""
        return float(min(self.delay * 2 ** (attempt - 1), self.max_delay))


@dataclass(frozen=True)
class Frame:
    pixels: Image
    """(H, W, 3) BGR, or a video's decoded 4:2:0 planes, which the pipeline crops before converting."""
    index: int
    """Position in its source, from 0."""
    pts: float
    """Presentation time in seconds (0 for still images)."""
    t_capture: float = 0.0
    """Wall-clock time (time.time()) when the frame was read."""

    @cached_property
    def image(self) -> npt.NDArray[np.uint8]:
        """(H, W, 3) BGR, converted from the planes on first use (by outputs that draw or record)."""
        return self.pixels.bgr() if isinstance(self.pixels, YUV420) else self.pixels

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return self.pixels.shape[1], self.pixels.shape[0]


@dataclass(frozen=True)
class SourceInfo:
    """What outputs need to know about a source before its first frame."""

    spec: str
    """What the user gave: a path, URL or camera index."""
    live: bool
    width: int | None = None
    height: int | None = None
    rate: Fraction | None = None
    """Nominal frame rate, where the source has one."""
    time_base: Fraction | None = None
    """Time base of the video stream's timestamps (video files and streams)."""
    frames: int | None = None
    """Frame count where the container says (0 / None: unknown)."""
    path: str | None = None
    """The media file, for copying its audio into a recording."""
    scenes: bool = False
    """Every frame is a scene of its own (images and folders of them): nobody is followed from one to the next."""


@dataclass(frozen=True)
class Problem:
    """A file of an image source that was not read whole: skipped (no frame came of it) or damaged (its frame
    is what the decoder made of it)."""

    path: str
    skipped: bool
    reason: str
    """Why, shared by files with the same problem: `not an image`, or what the decoder said (libjpeg's
    `Premature end of JPEG file`)."""


class Source(ABC):
    """A stream of frames with an explicit lifetime: iterate once, then close (or use `with`)."""

    info: SourceInfo
    damaged: int = 0
    """Packets that could not be decoded and were skipped (the frames around them still come)."""
    last_damage: str | None = None
    """Why the latest damaged packet could not be decoded."""
    problems: Sequence[Problem] = ()
    """Files of an image folder skipped or damaged so far, in the order they were met."""

    @abstractmethod
    def __iter__(self) -> Iterator[Frame]: ...

    def close(self) -> None:
        """Release the file, device or connection. Safe to call twice."""

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_image(path: str | os.PathLike[str]) -> npt.NDArray[np.uint8]:
    image = cv2.imread(os.fspath(path), cv2.IMREAD_COLOR)
    if image is None:
        raise SourceError(f"{path}: not a readable image (missing, empty or an unsupported format)")
    return np.asarray(image, dtype=np.uint8)


_STDERR = threading.Lock()


@contextlib.contextmanager
def _captured_stderr() -> Iterator[list[str]]:
    """What C libraries write to file descriptor 2 meanwhile (libjpeg's warnings go there, past Python and
    OpenCV's log level), captured into the list instead of the terminal. One capture at a time, holding
    tqdm's lock too, so that a progress bar drawn by another thread is not caught in it."""
    from tqdm import tqdm

    said: list[str] = []
    with _STDERR, tqdm.get_lock(), tempfile.TemporaryFile() as tmp:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError, AttributeError):  # no stderr to capture (closed, or a GUI process)
            yield said
            return
        os.dup2(tmp.fileno(), 2)
        try:
            yield said
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            said.append(tmp.read().decode("utf-8", "replace"))


def decode_image(path: str | os.PathLike[str]) -> tuple[npt.NDArray[np.uint8] | None, str]:
    """An image file as (H, W, 3) BGR, None where it cannot be decoded, and what the decoder said about it (a
    truncated JPEG: `Premature end of JPEG file`, its missing part grey) in one line, "" for a sound file.
    The decoder's messages are returned, not printed; unlike `read_image`, calls take turns."""
    with _captured_stderr() as said:
        image = cv2.imread(os.fspath(path), cv2.IMREAD_COLOR)
    message = "; ".join(dict.fromkeys(line.strip() for text in said for line in text.splitlines() if line.strip()))
    return (None if image is None else np.asarray(image, dtype=np.uint8)), message


class ImageSource(Source):
    """One image file, or every image of a folder sorted by name. A folder's other files, and images that
    cannot be decoded, are skipped; a damaged image gives what its decoder made of it. Both are listed in
    `problems`, and nothing is printed."""

    def __init__(self, path: Path) -> None:
        self.problems: list[Problem] = []
        self._noted: set[Problem] = set()
        if path.is_dir():
            entries = sorted(path.iterdir())
            self.paths = [p for p in entries if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
            if not self.paths:
                raise SourceError(f"{path}: folder holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
            for p in entries:
                if p not in self.paths:
                    self._note(p, True, "a folder (not searched)" if p.is_dir() else "not an image")
        else:
            self.paths = [path]
        # the first image that decodes gives the size, and is kept for the first frame
        for k, p in enumerate(self.paths):
            if (image := self._decode(p)) is not None:
                self._first = k, image
                break
        else:
            if not path.is_dir():
                raise SourceError(f"{path}: not a readable image (missing, empty or an unsupported format)")
            raise SourceError(f"{path}: none of its {len(self.paths)} images can be decoded")
        self.info = SourceInfo(str(path), live=False, width=image.shape[1], height=image.shape[0],
                               frames=len(self.paths), scenes=True)

    def _note(self, path: Path, skipped: bool, reason: str) -> None:
        problem = Problem(os.fspath(path), skipped, reason)
        if problem not in self._noted:  # iterating again meets the same problems again
            self._noted.add(problem)
            self.problems.append(problem)

    def _decode(self, path: Path) -> npt.NDArray[np.uint8] | None:
        image, said = decode_image(path)
        if image is None:
            self._note(path, True, "not a readable image")
        elif said:
            self._note(path, False, said)
        return image

    def __iter__(self) -> Iterator[Frame]:
        start, first = self._first
        i = 0
        for k, p in enumerate(self.paths[start:]):
            image = first if k == 0 else self._decode(p)
            if image is not None:
                yield Frame(image, i, 0.0, time.time())
                i += 1


class AVSource(Source):
    """A video file or network stream decoded by PyAV, with exact timestamps.

    Files use frame threading (faster, a few frames of delay); network streams keep the default
    slice threading, since frame threading adds a frame of latency per thread. `realtime=True`
    plays a file at its native rate, as a live source would deliver it."""

    def __init__(self, spec: str, realtime: bool = False, timeout: float = NETWORK_TIMEOUT_S) -> None:
        import av  # here, not at module level: image-only users (training, evaluation) need no PyAV

        network = bool(URL.match(spec)) and not spec.startswith("file:")
        if not network and not Path(spec).exists():
            raise SourceError(f"{spec}: no such file or folder")
        options = {"rtsp_transport": "tcp"} if spec.startswith("rtsp") else {}
        try:
            self.container = av.open(spec, options=options, timeout=timeout if network else None)
        except (av.FFmpegError, UnicodeDecodeError, OSError) as e:
            what = "cannot connect to the stream" if network else "cannot open as video"
            raise SourceError(f"{spec}: {what} ({_reason(e)})") from None
        if not self.container.streams.video:
            self.container.close()
            raise SourceError(f"{spec}: has no video stream")
        self.stream = self.container.streams.video[0]
        if self.stream.codec_context is None:
            self.container.close()
            raise SourceError(f"{spec}: its video codec is not supported by this FFmpeg; convert it, e.g. "
                              "ffmpeg -i INPUT -c:v libx264 OUTPUT.mp4")
        if not network:
            self.stream.thread_type = "AUTO"
        self.realtime = realtime
        ctx = self.stream.codec_context
        self.info = SourceInfo(
            spec, live=network or realtime, width=ctx.width or None, height=ctx.height or None,
            rate=Fraction(self.stream.average_rate) if self.stream.average_rate else None,
            time_base=Fraction(self.stream.time_base) if self.stream.time_base else None,
            frames=self.stream.frames or None, path=None if network else os.fspath(spec))

    def __iter__(self) -> Iterator[Frame]:
        """Decode packet by packet: a damaged packet is skipped and counted (`damaged`), not the end."""
        import av

        start_wall: float | None = None
        start_pts = 0.0
        i = 0
        try:
            for packet in self.container.demux(self.stream):
                try:
                    frames = packet.decode()
                except av.FFmpegError as e:
                    self.damaged, self.last_damage = self.damaged + 1, _reason(e)
                    if self.damaged > MAX_DAMAGED:
                        raise SourceError(f"{self.info.spec}: more than {MAX_DAMAGED} damaged packets "
                                          f"({self.last_damage}); the file is too damaged to read") from None
                    continue
                for frame in frames:
                    pts = float(frame.time) if frame.time is not None else i / float(self.info.rate or 25)
                    if self.realtime:
                        if start_wall is None:
                            start_wall, start_pts = time.time(), pts
                        delay = start_wall + (pts - start_pts) - time.time()
                        if delay > 0:
                            time.sleep(delay)
                    yield Frame(_pixels(frame), i, pts, time.time())
                    i += 1
        except av.FFmpegError as e:
            raise SourceError(f"{self.info.spec}: reading failed after {i} frames ({_reason(e)})") from None

    def close(self) -> None:
        self.container.close()


# colour spaces whose 4:2:0 -> BGR conversion OpenCV does as FFmpeg does: unspecified (FFmpeg then uses
# BT.601), BT.470BG and SMPTE 170M (both BT.601); in limited ("MPEG") or unspecified range
_BT601 = {2, 5, 6}
_LIMITED = {0, 1}


def _pixels(frame: Any) -> Image:
    """A decoded frame as the pipeline takes it: views of its own 4:2:0 planes where OpenCV's conversion
    matches FFmpeg's (no copy, no conversion of the whole frame), else converted to BGR by FFmpeg."""
    if (frame.format.name == "yuv420p" and frame.width % 2 == 0 and frame.height % 2 == 0
            and frame.colorspace in _BT601 and frame.color_range in _LIMITED):
        y, u, v = (np.frombuffer(p, dtype=np.uint8).reshape(p.height, p.line_size)[:, :p.width]
                   for p in frame.planes)
        return YUV420(y, u, v)
    return np.asarray(frame.to_ndarray(format="bgr24"), dtype=np.uint8)


class CameraSource(Source):
    """A local camera through OpenCV (V4L2 on Linux), with a one-frame driver buffer for low latency."""

    def __init__(self, spec: str) -> None:
        device: int | str = int(spec) if spec.isdigit() else spec
        self.capture = cv2.VideoCapture(device, cv2.CAP_V4L2 if os.name == "posix" else cv2.CAP_ANY)
        if not self.capture.isOpened():
            self.capture.release()
            hint = f"/dev/video{spec}" if spec.isdigit() else spec
            raise SourceError(f"camera {spec}: cannot open {hint} (no such camera, or it is busy); "
                              "check `ls /dev/video*` and that no other program uses it")
        self.capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        fps = self.capture.get(cv2.CAP_PROP_FPS)
        self.info = SourceInfo(spec, live=True, width=int(self.capture.get(cv2.CAP_PROP_FRAME_WIDTH)) or None,
                               height=int(self.capture.get(cv2.CAP_PROP_FRAME_HEIGHT)) or None,
                               rate=Fraction(fps).limit_denominator(1001) if fps > 0 else None)

    def __iter__(self) -> Iterator[Frame]:
        t0, i = time.time(), 0
        while True:
            ok, image = self.capture.read()
            if not ok:  # unplugged, or the driver gave up: a fault the runtime may retry, not an end
                raise SourceError(f"camera {self.info.spec}: " + ("opened but delivers no frames" if i == 0
                                                                   else f"stopped delivering after {i} frames"))
            now = time.time()
            yield Frame(np.asarray(image, dtype=np.uint8), i, now - t0, now)
            i += 1

    def close(self) -> None:
        self.capture.release()


def open_source(spec: str | os.PathLike[str], realtime: bool = False, timeout: float = NETWORK_TIMEOUT_S) -> Source:
    """A source from what a user types: a camera index (`0`) or device (`/dev/video0`), a URL
    (`rtsp://`, `http://`, ...), an image file, a folder of images, or a video file.

    `realtime` plays a video file at its native rate as a live source (for latency measurements
    and for replaying recordings as if they were cameras). `timeout`: seconds a network stream may go
    without data before reading fails."""
    text = os.fspath(spec)
    if text.isdigit() or text.startswith("/dev/video"):
        return CameraSource(text)
    if URL.match(text):
        return AVSource(text, timeout=timeout)
    path = Path(text)
    if not path.exists():
        raise SourceError(f"{text}: no such file or folder")
    if path.is_dir() or path.suffix.lower() in IMAGE_SUFFIXES:
        return ImageSource(path)
    return AVSource(text, realtime=realtime)


def default_clip() -> str:
    """The sample clip of the shared data folder (STREAMPOSE_DATA, default ../shared/data)."""
    data = os.environ.get("STREAMPOSE_DATA", "../shared/data")
    return os.path.join(data, "video", "basketball_240p.mp4")


def iter_frames(source: str | os.PathLike[str]) -> Iterator[Frame]:
    """Every frame of a source, in order (the source is closed when iteration ends)."""
    with open_source(source) as src:
        yield from src


def _reason(e: BaseException) -> str:
    return getattr(e, "strerror", None) or str(e)
