"""What the runtime does with each pose: publish it, draw it into a video, write it to a file, show it.

Each is a `Sink` (see `streampose.runtime`); pass any mix to `PoseStream(..., sinks=[...])`, or
write your own by overriding `Sink.pose`.
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from streampose.draw import draw_hud, draw_pose, person_color
from streampose.outputs import KeypointWriter, VideoWriter, check_video_path, fit_video_size
from streampose.preview import PreviewEncoder
from streampose.publish import Publisher
from streampose.runtime import Result, Sink, StreamEvent, StreamStats
from streampose.wire import ControlMessage


class PublishSink(Sink):
    """Keypoints over ZeroMQ (wire format v2: a message per frame, with its people), with start / eos / error and
    periodic stats on `ctl/<stream>`; with `preview_fps`, small JPEGs of the frames on `img/<stream>` for
    viewers (`streampose.preview`: at most that many a second per stream, encoded off the pipeline)."""

    def __init__(self, publisher: Publisher, stats_every: float = 1.0, preview_fps: float | None = None) -> None:
        self.publisher, self.stats_every = publisher, stats_every
        self._next_stats: dict[str, float] = {}
        self._open: dict[str, StreamStats] = {}
        self.previews = PreviewEncoder(preview_fps) if preview_fps else None

    def start(self, event: StreamEvent, stats: StreamStats) -> None:
        i = event.info
        self._open[event.stream] = stats
        self.publisher.send(ControlMessage(event.stream, "start", {
            "source": i.spec, "live": i.live, "size": [i.width, i.height] if i.width and i.height else None,
            "rate": float(i.rate) if i.rate else None}))
        self._next_stats[event.stream] = time.monotonic() + self.stats_every

    def pose(self, result: Result, stats: StreamStats) -> None:
        self.publisher.send(result.message())
        if self.previews is not None:
            for preview in self.previews.take():
                self.publisher.send(preview)
            self.previews.offer(result.stream, result.frame)
        if time.monotonic() >= self._next_stats.get(result.stream, 0.0):
            self._next_stats[result.stream] = time.monotonic() + self.stats_every
            self.publisher.send(ControlMessage(result.stream, "stats", stats.to_dict()))

    def notice(self, event: StreamEvent, stats: StreamStats) -> None:
        """A lost connection is an `error` marked `retrying` (not the stream's end); its return, a `start`
        marked `recovered`."""
        if event.kind == "retry":
            self.publisher.send(ControlMessage(event.stream, "error", {
                **stats.to_dict(), "message": event.error, "retrying": True, "attempt": event.attempt,
                "retry_in": event.delay}))
        else:
            self.publisher.send(ControlMessage(event.stream, "start", {
                "source": event.info.spec, "live": event.info.live, "recovered": True, "attempt": event.attempt}))

    def end(self, event: StreamEvent, stats: StreamStats) -> None:
        self._open.pop(event.stream, None)
        if self.previews is not None:
            for preview in self.previews.take():
                self.publisher.send(preview)
        data: dict[str, Any] = stats.to_dict()
        if event.error:
            data["message"] = event.error
        self.publisher.send(ControlMessage(event.stream, event.kind, data))

    def close(self) -> None:
        """Streams still open (Ctrl-C, an error elsewhere) get their eos, marked interrupted."""
        for stream, stats in self._open.items():
            self.publisher.send(ControlMessage(stream, "eos", {**stats.to_dict(), "interrupted": True}))
        self._open.clear()
        if self.previews is not None:
            self.previews.close()
        self.publisher.close()


class KeypointSink(Sink):
    """Every frame's poses to one JSON-lines or CSV file (by suffix); rows carry their stream id and person."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.writer = KeypointWriter(path)

    def pose(self, result: Result, stats: StreamStats) -> None:
        self.writer.write(result.message())

    def close(self) -> None:
        self.writer.close()


class VideoSink(Sink):
    """The frames with their skeletons drawn (and a HUD: fps, live latency) to a video file per stream,
    with the input's timing and audio. Several streams write `NAME-<stream>.EXT`."""

    def __init__(self, path: str | os.PathLike[str], streams: int = 1, hud: bool = True,
                 min_conf: float = 0.3, by_person: bool = False) -> None:
        self.path, self.multi, self.hud, self.min_conf = check_video_path(path), streams > 1, hud, min_conf
        self.by_person = by_person
        self.writers: dict[str, VideoWriter] = {}
        self.sizes: dict[str, tuple[int, int]] = {}
        self.timed: dict[str, bool] = {}

    def path_for(self, stream: str) -> Path:
        return self.path.with_name(f"{self.path.stem}-{stream}{self.path.suffix}") if self.multi else self.path

    def start(self, event: StreamEvent, stats: StreamStats) -> None:
        i = event.info
        if i.width and i.height:
            self._open(event.stream, i.width, i.height, event)

    def _open(self, stream: str, width: int, height: int, event: StreamEvent | None) -> VideoWriter:
        info = event.info if event else None
        rate = info.rate if info and info.rate else 25
        # still images have no timestamps: space them at the nominal rate
        self.timed[stream] = bool(info and info.time_base)
        if (fit := fit_video_size(width, height)) != (width, height):
            # through tqdm's lock, like the progress bars: an image source's decoder capture holds it (sources.py)
            tqdm.write(f"streampose: warning: {self.path_for(stream)}: {width}x{height} frames are larger than H.264 "
                       f"allows; recording them scaled to {fit[0]}x{fit[1]}", file=sys.stderr)
            width, height = fit
        w = self.writers[stream] = VideoWriter(self.path_for(stream), width, height, rate,
                                               time_base=info.time_base if info else None,
                                               audio_from=info.path if info and not info.live else None)
        self.sizes[stream] = (width, height)
        return w

    def pose(self, result: Result, stats: StreamStats) -> None:
        image = result.frame.image
        h, w = image.shape[:2]
        writer = self.writers.get(result.stream) or self._open(result.stream, w, h, None)
        size = self.sizes[result.stream]
        canvas = render(result, stats if self.hud else None, self.min_conf, self.by_person)
        if (w, h) != size:  # image folders may mix sizes; the video keeps the first
            canvas = cv2.resize(canvas, size, interpolation=cv2.INTER_AREA)
        writer.write(canvas, result.frame.pts if self.timed[result.stream] else None)

    def end(self, event: StreamEvent, stats: StreamStats) -> None:
        w = self.writers.pop(event.stream, None)
        if w is not None:
            w.close()

    def close(self) -> None:
        for w in self.writers.values():
            w.close()
        self.writers.clear()


class ShowSink(Sink):
    """A window per stream (needs an OpenCV build with a GUI, i.e. `opencv-python`, not `-headless`).
    `q` or Esc stops the run."""

    def __init__(self, min_conf: float = 0.3, by_person: bool = False) -> None:
        if re.search(r"GUI:\s+NONE", cv2.getBuildInformation()):
            raise ValueError("--show needs OpenCV with a GUI: pip install opencv-python "
                             "(this one is opencv-python-headless); use --save out.mp4 instead")
        self.min_conf, self.by_person = min_conf, by_person

    def pose(self, result: Result, stats: StreamStats) -> None:
        cv2.imshow(f"streampose {result.stream}", render(result, stats, self.min_conf, self.by_person))
        if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
            raise KeyboardInterrupt

    def close(self) -> None:
        cv2.destroyAllWindows()


class ProgressSink(Sink):
    """A progress bar per file stream (frames, fps, ETA) and a stats line for live streams, on stderr."""

    def __init__(self) -> None:
        self.bars: dict[str, tqdm[Any]] = {}

    def start(self, event: StreamEvent, stats: StreamStats) -> None:
        total = None if event.info.live else event.info.frames
        self.bars[event.stream] = tqdm(total=total, desc=event.stream, unit="f", disable=None, leave=False,
                                       dynamic_ncols=True)

    def pose(self, result: Result, stats: StreamStats) -> None:
        bar = self.bars.get(result.stream)
        if bar is None:
            return
        bar.update(1)
        if stats.live and stats.delivered % 10 == 0:  # files: the bar's rate is their throughput
            bar.set_postfix(capture_to_publish=f"{stats.latency_ms():.0f}ms", dropped=stats.dropped, refresh=False)

    def notice(self, event: StreamEvent, stats: StreamStats) -> None:
        if event.kind == "retry":
            tqdm.write(f"streampose: warning: {event.stream}: {event.error}; reconnecting in {event.delay:g} s "
                       f"(attempt {event.attempt})", file=sys.stderr)
        else:
            tqdm.write(f"streampose: {event.stream}: reconnected", file=sys.stderr)

    def end(self, event: StreamEvent, stats: StreamStats) -> None:
        bar = self.bars.pop(event.stream, None)
        if bar is not None:
            bar.close()

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
        self.bars.clear()


def hud_lines(stats: StreamStats, frame: int) -> list[str]:
    """The overlay's lines: throughput, capture-to-publish latency where the source is live, the frame."""
    latency = [f"capture to publish {stats.latency_ms():.0f} ms"] if stats.live else []
    return [f"{stats.fps:.1f} fps", *latency, f"frame {frame}"]


def render(result: Result, stats: StreamStats | None, min_conf: float = 0.3, by_person: bool = False
           ) -> np.ndarray[Any, Any]:
    """A copy of the frame with the skeletons and their crop boxes and (with `stats`) a HUD: fps, and for a live
    source the latency from capture to publish (a file's would be time queued behind the frames before it).
    `by_person` (runs that pose several people): each person in the colour of its id, labelled with it;
    otherwise limbs are coloured by the body's side."""
    canvas: np.ndarray[Any, Any] = result.frame.image.copy()
    for pose in result.poses:
        draw_pose(canvas, pose.keypoints, pose.joints, min_conf=min_conf, box=pose.box,
                  color=person_color(pose.id) if by_person else None, label=f"#{pose.id}" if by_person else None)
    if stats is not None:
        draw_hud(canvas, hud_lines(stats, result.frame.index))
    return canvas
