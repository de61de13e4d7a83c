"""Where frames come from: image files, image folders and video files.

Videos are decoded by PyAV with frame threading (files are not latency-bound); every frame is
yielded once, in order, with its presentation time. Cameras and network streams arrive with the
streaming runtime.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np
import numpy.typing as npt

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


class SourceError(RuntimeError):
    """A source that cannot be opened or read; the message names the source and the problem."""


@dataclass(frozen=True)
class Frame:
    image: npt.NDArray[np.uint8]
    """(H, W, 3) BGR."""
    index: int
    """Position in its source, from 0."""
    pts: float
    """Presentation time in seconds (0 for still images)."""


def read_image(path: str | os.PathLike[str]) -> npt.NDArray[np.uint8]:
    image = cv2.imread(os.fspath(path), cv2.IMREAD_COLOR)
    if image is None:
        raise SourceError(f"{path}: not a readable image (missing, empty or an unsupported format)")
    return np.asarray(image, dtype=np.uint8)


def iter_frames(source: str | os.PathLike[str]) -> Iterator[Frame]:
    """Every frame of an image, a folder of images (sorted by name) or a video file."""
    path = Path(source)
    if path.is_dir():
        images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise SourceError(f"{path}: folder holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        for i, p in enumerate(images):
            yield Frame(read_image(p), i, 0.0)
    elif not path.exists():
        raise SourceError(f"{path}: no such file or folder")
    elif path.suffix.lower() in IMAGE_SUFFIXES:
        yield Frame(read_image(path), 0, 0.0)
    else:
        yield from _iter_video(path)


def _iter_video(path: Path) -> Iterator[Frame]:
    try:
        container = av.open(os.fspath(path))
    except (av.FFmpegError, UnicodeDecodeError) as e:
        raise SourceError(f"{path}: cannot open as video ({e})") from None
    with container:
        if not container.streams.video:
            raise SourceError(f"{path}: has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            for i, frame in enumerate(container.decode(stream)):
                pts = float(frame.time) if frame.time is not None else 0.0
                yield Frame(np.asarray(frame.to_ndarray(format="bgr24"), dtype=np.uint8), i, pts)
        except av.FFmpegError as e:
            raise SourceError(f"{path}: decoding failed ({e})") from None
