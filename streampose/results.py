"""What a run delivers: each frame's poses (`Result`), its streams' events and counters, and the hook that
receives them (`Sink`), apart from the stages that make them (`streampose.runtime`)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from streampose.joints import JointSet
from streampose.pose import Pose
from streampose.sources import Frame, Problem, SourceInfo
from streampose.wire import Person, PoseMessage


@dataclass(frozen=True)
class Result:
    """One frame's poses, with the frame they came from: every person found, most confident first, or none."""

    stream: str
    frame: Frame
    poses: tuple[Pose, ...]
    joints: JointSet
    """The joint set of the model (what the poses have, also when there are none)."""

    @property
    def pose(self) -> Pose | None:
        """The most confident person's pose, or None where no one was found."""
        return self.poses[0] if self.poses else None

    def message(self, t_publish: float | None = None) -> PoseMessage:
        """The wire-format message for this frame."""
        w, h = self.frame.size
        people = tuple(Person(p.id, p.keypoints, p.box, p.score) for p in self.poses)
        return PoseMessage(stream=self.stream, frame=self.frame.index, pts=self.frame.pts,
                           t_capture=self.frame.t_capture, t_publish=time.time() if t_publish is None else t_publish,
                           size=(w, h), joints=self.joints.name, people=people)


@dataclass(frozen=True)
class StreamEvent:
    """A stream's start, its end (`eos`) or the error that ended it, in order with its results; for
    live streams also a lost connection being retried (`retry`) and its return (`recovered`)."""

    stream: str
    kind: Literal["start", "eos", "error", "retry", "recovered"]
    info: SourceInfo
    error: str | None = None
    attempt: int = 0
    """Which reopening this is (retry, recovered)."""
    delay: float = 0.0
    """Seconds until the reopening (retry)."""

    @property
    def final(self) -> bool:
        """The stream's last event."""
        return self.kind in ("eos", "error")


class Sink:
    """What happens to each pose: override what you need (DeepLabCut-Live's processor hook).

    Sinks run in the consumer's thread, one call at a time, in stream order."""

    def start(self, event: StreamEvent, stats: StreamStats) -> None:
        """A stream begins; `event.info` has its size and rate where known."""

    def pose(self, result: Result, stats: StreamStats) -> None:
        """One frame's pose."""

    def end(self, event: StreamEvent, stats: StreamStats) -> None:
        """A stream ended (`eos`) or failed (`error`)."""

    def notice(self, event: StreamEvent, stats: StreamStats) -> None:
        """A live stream lost its connection and is being reopened (`retry`), or delivers again (`recovered`)."""

    def close(self) -> None:
        """Flush and release outputs; called once when the runtime stops, also after errors or Ctrl-C."""


@dataclass
class StreamStats:
    """Counters of one stream, updated as it runs."""

    stream: str
    live: bool = False
    """A live source (camera, URL, `--live` file): its latency is capture to publish, what a viewer waits. A file's
    frames wait their turn behind the frames read before them, so theirs is queueing, not lag: outputs show a
    file's throughput (fps) instead."""
    delivered: int = 0
    dropped_inbox: int = 0
    dropped_batch: int = 0
    damaged: int = 0
    """Packets of the input that could not be decoded and were skipped."""
    problems: Sequence[Problem] = ()
    """Files of an image folder skipped (not images, not decodable) or damaged, so far."""
    reconnects: int = 0
    """Times a live source was reopened after a failure."""
    started: float = field(default_factory=time.time)
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=2000))
    ended: bool = False
    error: str | None = None

    @property
    def dropped(self) -> int:
        """Live frames skipped as stale (always 0 for file sources)."""
        return self.dropped_inbox + self.dropped_batch

    @property
    def fps(self) -> float:
        return self.delivered / max(time.time() - self.started, 1e-9)

    def latency_ms(self, q: float = 50.0) -> float:
        """A percentile of the latency from capture to the sinks (publish) over recent frames, in ms (see `live`)."""
        return float(np.percentile(self.latencies, q) * 1e3) if self.latencies else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {"frames": self.delivered, "dropped": self.dropped, "damaged": self.damaged,
                "reconnects": self.reconnects, "fps": round(self.fps, 2),
                "latency_ms_p50": round(self.latency_ms(50), 2), "latency_ms_p99": round(self.latency_ms(99), 2)}
