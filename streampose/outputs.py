"""Files the runtime writes: the drawn video (with the input's timing and audio) and keypoint tables.

Both stay valid whatever ends the run: keypoint lines are flushed as they are written, and
`close()` (which the runtime calls also after errors and Ctrl-C; or use `with`) finalizes the
video, so a partly written recording still plays.
"""

from __future__ import annotations

import csv
import json
import math
import os
import sys
import warnings
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import cv2
import numpy as np
import numpy.typing as npt

from streampose.joints import JOINT_SETS
from streampose.wire import PoseMessage, to_map

if TYPE_CHECKING:
    import av

VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov")
KEYPOINT_SUFFIXES = (".jsonl", ".csv", ".parquet")
X264_OPTIONS = {"crf": "20", "preset": "veryfast"}
MAX_VIDEO_SIDE = 8192
MAX_VIDEO_PIXELS = 8192 * 4352
"""The largest frame H.264 allows (level 6.2: 139,264 macroblocks); FFmpeg refuses bigger ones outright."""


class OutputError(OSError):
    """An output that cannot be written; the one-line message names the path and what to do."""


def _check_target(path: Path) -> None:
    """Fail before any work is done, rather than after the first frame."""
    parent = path.parent
    if not parent.is_dir():
        raise OutputError(f"{path}: folder {parent} does not exist; create it or choose another path")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"{path}: folder {parent} is not writable; choose another path")
    if path.is_dir():
        raise OutputError(f"{path}: is a folder; give a file name")


def check_video_path(path: str | os.PathLike[str]) -> Path:
    """The path of a video to write, checked (suffix, folder) before any work is done."""
    p = Path(path)
    if p.suffix.lower() not in VIDEO_SUFFIXES:
        raise OutputError(f"{path}: cannot write video as {p.suffix or 'a file without suffix'}; "
                          f"use {', '.join(VIDEO_SUFFIXES)}")
    _check_target(p)
    return p


def fit_video_size(width: int, height: int) -> tuple[int, int]:
    """The frame's size, scaled down (same aspect) where it exceeds what H.264 can hold, so that a
    recording of a huge input is smaller rather than impossible."""
    scale = min(1.0, MAX_VIDEO_SIDE / max(width, height), math.sqrt(MAX_VIDEO_PIXELS / (width * height)))
    return max(1, math.floor(width * scale)), max(1, math.floor(height * scale))


class VideoWriter:
    """H.264 (yuv420p) video in .mp4, .mkv or .mov, with the input's frame times and audio.

    Timing: with the input's `time_base`, a frame at `pts` seconds is stored at tick
    round(pts / time_base), so output timestamps are the input's exactly (Matroska stores
    milliseconds, so there they are within 0.5 ms). Without one the clock ticks a whole number
    of times per frame and at least every millisecond. `pts=None` spaces frames at 1 / `rate`.
    Ticks are forced to increase strictly, as the encoder requires.

    Size: yuv420p halves the colour resolution, so H.264 needs an even width and height. An odd
    frame gets its last column / row repeated (edge padding): the video is one pixel larger
    instead of losing a pixel of the input, and the padding matches its neighbours.

    Audio: the first audio stream of `audio_from` is copied packet by packet (not re-encoded),
    interleaved with the video up to the last written frame; a codec the container cannot hold
    is left out with a warning."""

    def __init__(self, path: str | os.PathLike[str], width: int, height: int, rate: Fraction | float | int,
                 time_base: Fraction | None = None, audio_from: str | os.PathLike[str] | None = None) -> None:
        self.path = check_video_path(path)
        if width <= 0 or height <= 0:
            raise ValueError(f"{path}: video size must be positive, got {width}x{height}")
        if fit_video_size(width + width % 2, height + height % 2) != (width + width % 2, height + height % 2):
            raise ValueError(f"{path}: {width}x{height} is larger than H.264 allows ({MAX_VIDEO_SIDE} a side, "
                             f"{MAX_VIDEO_PIXELS} pixels); scale the frames down (see fit_video_size)")
        # floats such as 29.97 or 30000/1001 as a float: back to the fraction they stand for
        self.rate = Fraction(rate).limit_denominator(1001) if isinstance(rate, float) else Fraction(rate)
        if self.rate <= 0:
            raise ValueError(f"{path}: frame rate must be positive, got {rate}")
        self.time_base = Fraction(time_base) if time_base else Fraction(1, math.lcm(self.rate.numerator, 1000))
        self.width, self.height = width, height
        self.count = 0
        self._last: int | None = None
        self._closed = False
        import av  # here, not at module level: writing keypoints alone needs no PyAV (a tenth of a second to start)

        try:
            self.container = av.open(os.fspath(self.path), "w")
        except (av.FFmpegError, OSError) as e:
            raise OutputError(f"{path}: cannot create the file ({_reason(e)}); check the path") from None
        x264 = "libx264" in av.codecs_available
        self.stream = self.container.add_stream("libx264" if x264 else "mpeg4", rate=self.rate,
                                                options=X264_OPTIONS if x264 else {})
        self.stream.width, self.stream.height = width + width % 2, height + height % 2
        self.stream.pix_fmt = "yuv420p"
        self.stream.time_base = self.stream.codec_context.time_base = self.time_base
        if not x264:
            self.stream.bit_rate = int(self.stream.width * self.stream.height * self.rate * 0.2)
        self._audio_in: av.container.InputContainer | None = None
        self._audio_out: av.AudioStream | None = None
        self._audio_packets: Iterator[av.Packet[av.AudioStream]] = iter(())
        self._audio_next: av.Packet[av.AudioStream] | None = None
        if audio_from is not None:
            self._add_audio(os.fspath(audio_from))

    def _add_audio(self, source: str) -> None:
        import av

        try:
            inp = av.open(source)
        except (av.FFmpegError, OSError) as e:
            warnings.warn(f"{source}: cannot read its audio ({_reason(e)}); {self.path} will be silent",
                          stacklevel=3)
            return
        if not inp.streams.audio:
            inp.close()
            return
        audio = inp.streams.audio[0]
        if audio.codec_context.name not in self.container.supported_codecs:
            warnings.warn(f"{self.path}: a {self.path.suffix} file cannot hold the {audio.codec_context.name} audio "
                          f"of {source}; writing the video without sound (.mkv or .mov may keep it)", stacklevel=3)
            inp.close()
            return
        self._audio_in, self._audio_out = inp, self.container.add_stream_from_template(audio)
        self._audio_packets = inp.demux(audio)

    def write(self, image: npt.NDArray[np.uint8], pts: float | None = None) -> None:
        """Append a BGR frame shown at `pts` seconds of media time (None: one frame after the last)."""
        if self._closed:
            raise ValueError(f"{self.path}: write after close")
        if image.shape != (self.height, self.width, 3):
            raise ValueError(f"{self.path}: frame of shape {image.shape}, expected ({self.height}, {self.width}, 3)")
        pad_w, pad_h = self.width % 2, self.height % 2
        if pad_w or pad_h:
            image = np.asarray(cv2.copyMakeBorder(image, 0, pad_h, 0, pad_w, cv2.BORDER_REPLICATE), dtype=np.uint8)
        tick = round(self.count / (self.rate * self.time_base) if pts is None else pts / self.time_base)
        if self._last is not None:
            tick = max(tick, self._last + 1)
        import av

        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24")
        frame.pts, frame.time_base = tick, self.time_base
        try:
            for packet in self.stream.encode(frame):
                self.container.mux(packet)
            self._last, self.count = tick, self.count + 1
            self._copy_audio(tick * self.time_base)
        except (av.FFmpegError, OSError) as e:
            raise OutputError(f"{self.path}: writing failed ({_reason(e)})") from None

    def _copy_audio(self, until: Fraction) -> None:
        """Mux the audio packets that start before `until` (seconds), so the muxer can interleave
        them with the video and a recording cut short has no sound past its last frame."""
        while self._audio_out is not None:
            packet = self._audio_next if self._audio_next is not None else next(self._audio_packets, None)
            self._audio_next = None
            if packet is None:
                return
            if packet.dts is None:  # the demuxer's empty end-of-stream packet
                continue
            if packet.pts is not None and packet.pts * packet.time_base >= until:
                self._audio_next = packet
                return
            packet.stream = self._audio_out
            self.container.mux(packet)

    def close(self) -> None:
        """Flush the encoder, add the audio up to the end of the last frame and finalize the
        file. Safe to call twice; the file is valid however many frames were written (with none,
        FFmpeg never creates it)."""
        if self._closed:
            return
        self._closed = True
        try:
            try:
                for packet in self.stream.encode(None):
                    self.container.mux(packet)
                if self._last is not None:
                    self._copy_audio(self._last * self.time_base + 1 / self.rate)
            finally:
                self.container.close()
        finally:
            if self._audio_in is not None:
                self._audio_in.close()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class KeypointWriter:
    """Every frame's poses to a file, in the format its suffix names:

    - `.jsonl`: the wire map (`streampose.wire.to_map`, v2: a line per frame with its `people`, keypoints as
      nested lists); `-` writes these lines to stdout.
    - `.csv`: a row per person: stream, frame, pts, t_capture, person (its id), score, then `<joint>_x,
      <joint>_y, <joint>_c` per joint of the joint set (`j<i>` for sets streampose does not know); a frame where
      no one was found gets one row with the person and every value empty, so every frame has its row. One
      joint set per file.
    - `.parquet`: the same rows and columns as `.csv`, typed (empty values are nulls), through pyarrow (the
      `scale` extra); rows are written in groups and the file is readable once closed.

    JSON and CSV lines are flushed as written, so a run that dies leaves every finished line readable."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._stdout = os.fspath(path) == "-"
        self._csv: Any = None
        self._parquet: _ParquetRows | None = None
        self._layout: tuple[str, int] | None = None
        self._columns: list[str] = []
        self.file: IO[str]
        if self._stdout:
            self.file = sys.stdout
            return
        suffix = self.path.suffix.lower()
        if suffix not in KEYPOINT_SUFFIXES:
            raise OutputError(f"{path}: cannot write keypoints as {suffix or 'a file without suffix'}; "
                              "use .jsonl, .csv or .parquet")
        _check_target(self.path)
        if suffix == ".parquet":
            self._parquet = _ParquetRows(self.path)
            return
        try:
            self.file = open(self.path, "w", newline="", encoding="utf-8")  # closed in close()
        except OSError as e:
            raise OutputError(f"{path}: cannot create the file ({_reason(e)}); check the path") from None
        if suffix == ".csv":
            self._csv = csv.writer(self.file)

    def write(self, msg: PoseMessage) -> None:
        if self._csv is None and self._parquet is None:
            self.file.write(json.dumps(to_map(msg, binary_kp=False), separators=(",", ":")) + "\n")
            self.file.flush()
            return
        first = self._layout is None
        columns = self._columns_of(msg)
        rows = _rows(msg, len(columns) // 3)
        if self._parquet is not None:
            if first:
                self._parquet.start(columns)
            self._parquet.add(rows)
            return
        if first:
            self._csv.writerow([*ROW_HEAD, *columns])
        for row in rows:
            # str(np.float32) is the shortest text that reads back as the same float32
            self._csv.writerow(["" if v is None else str(v) if isinstance(v, np.floating) else v for v in row])
        self.file.flush()

    def _columns_of(self, msg: PoseMessage) -> list[str]:
        """The joint columns of the file, fixed by its first message: one joint set per file."""
        known = JOINT_SETS.get(msg.joints)
        k = len(msg.people[0].kp) if msg.people else len(known) if known is not None else 0
        layout = (msg.joints, k)
        if self._layout is None:
            self._layout = layout
            names = known.names if known is not None and len(known) == k else [f"j{i}" for i in range(k)]
            self._columns = [f"{n}_{c}" for n in names for c in "xyc"]
        elif msg.people and layout != self._layout:
            raise OutputError(f"{self.path}: a {self.path.suffix} file holds one joint set, got {msg.joints} ({k} "
                              f"joints) after {self._layout[0]} ({self._layout[1]}); use .jsonl for mixed sets")
        return self._columns

    def close(self) -> None:
        """Close the file (stdout is only flushed). Safe to call twice."""
        if self._parquet is not None:
            self._parquet.close()
        elif self._stdout:
            self.file.flush()
        else:
            self.file.close()

    def __enter__(self) -> KeypointWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


ROW_HEAD = ("stream", "frame", "pts", "t_capture", "person", "score")
"""The first columns of a CSV or Parquet keypoint file; the joints' `<name>_x, _y, _c` follow."""


def _rows(msg: PoseMessage, k: int) -> list[list[Any]]:
    """A frame's table rows: one per person, or one of empty values (None) when no one was found."""
    head: list[Any] = [msg.stream, msg.frame, msg.pts, msg.t_capture]
    if not msg.people:
        return [[*head, None, None, *([None] * (3 * k))]]
    return [[*head, p.id, p.score, *np.asarray(p.kp, np.float32).reshape(-1)] for p in msg.people]


class _ParquetRows:
    """Keypoint rows into a Parquet file, a row group every GROUP rows (memory stays flat on long videos)."""

    GROUP = 4096

    def __init__(self, path: Path) -> None:
        import pyarrow as pa

        self.path, self.pa = path, pa
        self.columns: list[str] | None = None
        self.rows: list[list[Any]] = []
        self.writer: Any = None

    def start(self, joint_columns: list[str]) -> None:
        import pyarrow.parquet as pq

        pa = self.pa
        types = [pa.string(), pa.int64(), pa.float64(), pa.float64(), pa.int32(), pa.float32()]
        fields = [pa.field(n, t) for n, t in zip(ROW_HEAD, types, strict=True)]
        self.schema = pa.schema(fields + [pa.field(c, pa.float32()) for c in joint_columns])
        self.columns = [*ROW_HEAD, *joint_columns]
        try:
            self.writer = pq.ParquetWriter(os.fspath(self.path), self.schema)
        except OSError as e:
            raise OutputError(f"{self.path}: cannot create the file ({_reason(e)}); check the path") from None

    def add(self, rows: list[list[Any]]) -> None:
        self.rows += rows
        if len(self.rows) >= self.GROUP:
            self._flush()

    def _flush(self) -> None:
        if self.rows:
            columns = zip(*self.rows, strict=True)
            arrays = [self.pa.array(c, type=f.type) for c, f in zip(columns, self.schema, strict=True)]
            self.writer.write_table(self.pa.Table.from_arrays(arrays, schema=self.schema))
            self.rows = []

    def close(self) -> None:
        """Write the last rows and the footer. Safe to call twice; a file that got no frame is never created."""
        if self.writer is not None:
            try:
                self._flush()
            finally:
                self.writer.close()
                self.writer = None


def _reason(e: BaseException) -> str:
    return getattr(e, "strerror", None) or str(e)
