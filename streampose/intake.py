"""Each source's side of the runtime: a reader thread per source puts its frames and events into the
source's inbox, reopening live sources that fail (`Reconnect`), and the preprocess stage takes them out.

File sources block when their inbox is full (every frame, in order); live sources keep only the newest frame
and count each one dropped. Events (start, retry, recovered, end, error) are never dropped.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

from streampose.crop import CropPolicy
from streampose.results import StreamEvent, StreamStats
from streampose.smoothing import OneEuro
from streampose.sources import Frame, Reconnect, Source, SourceError, SourceInfo, open_source

POLL_S = 0.05  # how often blocked stages look at the stop flag


@dataclass
class Stream:
    """One source's state through the pipeline: its reader's inbox, crop policy, counters and smoothers."""

    id: str
    source: Source
    policy: CropPolicy
    smooth: bool
    inbox: Inbox
    stats: StreamStats
    lock: threading.Lock = field(default_factory=threading.Lock)
    finished: bool = False
    last_index: int = -1
    """The newest frame index sent to inference (live streams never go back in time)."""
    next_index: int = 0
    """The index the reader gives the next frame (a reopened source counts on from here)."""
    failures: int = 0
    """Reopenings since the source last delivered a frame (a source that fails at once keeps backing off)."""
    smoothers: dict[int, OneEuro] = field(default_factory=dict)
    """One filter per person followed (with `smooth`)."""


class Inbox:
    """Frames (and events) from one reader to the preprocess stage. File sources block when it is
    full; live sources replace the oldest waiting frame and count the drop. Events are never dropped."""

    def __init__(self, cond: threading.Condition, capacity: int, live: bool, stats: StreamStats) -> None:
        self.cond, self.capacity, self.live, self.stats = cond, capacity, live, stats
        self.items: deque[Frame | StreamEvent] = deque()

    def put(self, item: Frame | StreamEvent, stop: threading.Event) -> None:
        with self.cond:
            if isinstance(item, Frame):
                if self.live:
                    while sum(isinstance(i, Frame) for i in self.items) >= self.capacity:
                        self._drop_oldest_frame()
                else:
                    while len(self.items) >= self.capacity and not stop.is_set():
                        self.cond.wait(POLL_S)
            self.items.append(item)
            self.cond.notify_all()

    def _drop_oldest_frame(self) -> None:
        for i, it in enumerate(self.items):
            if isinstance(it, Frame):
                del self.items[i]
                self.stats.dropped_inbox += 1
                return


def read(s: Stream, stop: threading.Event, reconnect: Reconnect | None) -> None:
    """A reader thread's work: the stream's start, every frame, then its end or error, into its inbox."""
    info = s.source.info
    try:
        s.inbox.put(StreamEvent(s.id, "start", info), stop)
        while not deliver(s, stop, reconnect):  # the source failed: reopen it, or end the stream with the error
            pass
        s.inbox.put(StreamEvent(s.id, "eos", info), stop)
    except SourceError as e:
        s.stats.damaged = s.source.damaged
        s.inbox.put(StreamEvent(s.id, "error", info, str(e)), stop)
    except Exception as e:  # a reader must always end its stream, whatever broke
        s.inbox.put(StreamEvent(s.id, "error", info, f"{info.spec}: {type(e).__name__}: {e}"), stop)
    finally:
        s.source.close()


def deliver(s: Stream, stop: threading.Event, reconnect: Reconnect | None) -> bool:
    """Put the source's frames into the inbox: True at its end (or on stop), False once it was reopened
    after a failure; raises the SourceError when it may not or cannot be reopened."""
    s.stats.problems = s.source.problems
    try:
        for frame in s.source:
            if stop.is_set():
                return True
            if frame.index != s.next_index:
                frame = dataclasses.replace(frame, index=s.next_index)
            s.next_index, s.failures = s.next_index + 1, 0
            s.stats.damaged = s.source.damaged
            s.inbox.put(frame, stop)
    except SourceError as e:
        error = e
    else:
        s.stats.damaged = s.source.damaged
        return True
    info = s.source.info
    if reconnect is None or not info.live or info.path is not None:  # files are not reopened
        raise error
    s.source.close()
    while (attempt := s.failures + 1) <= reconnect.attempts:
        s.failures = attempt
        delay = reconnect.wait(attempt)
        s.inbox.put(StreamEvent(s.id, "retry", info, str(error), attempt, delay), stop)
        if stop.wait(delay):
            return True
        try:
            s.source = open_source(info.spec, timeout=reconnect.timeout)
        except SourceError as e:
            error = e
            continue
        s.inbox.put(StreamEvent(s.id, "recovered", info, str(error), attempt), stop)
        return False
    raise SourceError(f"{error}; gave up after {reconnect.attempts} reconnection attempts") from None


def take_newest(s: Stream, cond: threading.Condition) -> Frame | None:
    """The newest frame in a live inbox, if only frames wait there (an event keeps its place in order)."""
    with cond:
        items = s.inbox.items
        if not items or not all(isinstance(i, Frame) for i in items):
            return None
        newest = items.pop()
        s.stats.dropped_inbox += len(items)
        items.clear()
        cond.notify_all()
    assert isinstance(newest, Frame)
    return newest


class Unopenable(Source):
    """A source that could not be opened, standing in for it so that its stream reports the error."""

    def __init__(self, spec: str, error: SourceError) -> None:
        self.info, self.error = SourceInfo(spec, live=False), error

    def __iter__(self) -> Iterator[Frame]:
        raise self.error
