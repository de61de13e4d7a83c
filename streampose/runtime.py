"""The streaming runtime: sources -> crop -> batch -> backend -> decode -> smooth -> sinks.

Stages run concurrently with bounded queues, so decoding, preprocessing, inference and the
sinks (publishing, rendering, writing) overlap:

    reader thread per source --inbox--> preprocess thread --prepared--> inference thread (batches,
        submits) --submitted--> collect thread (waits for each batch, decodes heatmaps)
        --results--> the consumer (whoever iterates `PoseStream`; sinks run there)

On files the backend runs batches side by side where it can (OpenVINO's streams, `jobs`): with one
batch on all cores, a core taken by the decoder for a moment stalls every core; side by side it
delays one batch. Live sources run one batch at a time on all cores, for the shortest latency.

File sources deliver every frame exactly once, in order: a full inbox blocks the reader
(back-pressure). Live sources keep only the newest frame: the inbox holds one, and a batch keeps
only the newest frame of each live stream; every frame dropped is counted. Stream events
(start / end / error) travel through the same queues as the frames, so each stream's results
arrive between its start and its end, in order. No queue is unbounded.

Cameras and network streams that fail or stop delivering are reopened with backoff (`Reconnect`);
sinks hear of it (`Sink.notice`: `retry`, then `recovered`) and frame indices carry on where they were.
The readers and their inboxes are `streampose.intake`; a frame's crops and the choice of its people,
`streampose.people`; this module is the stages between them and the consumer.

    with PoseStream("clip.mp4") as stream:
        for result in stream:
            print(result.frame.index, result.pose["l_wrist"])
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from streampose import models
from streampose.api import PoseEstimator
from streampose.checkpoint import Checkpoint
from streampose.crop import CANDIDATES, REDETECT, parse_crop
from streampose.detector import PersonDetector, open_detector
from streampose.intake import POLL_S, Inbox, Stream, Unopenable, read, take_newest
from streampose.people import Item, prepare, prepare_all, results
from streampose.pose import Pose
from streampose.results import Result, Sink, StreamEvent, StreamStats
from streampose.sources import Frame, Reconnect, Source, SourceError, SourceInfo, open_source

__all__ = ["PoseStream", "Result", "Sink", "StreamEvent", "StreamStats"]

JOIN_S = 0.5
"""How long `close` waits for the stages in all: a reader blocked in a network read (up to its timeout)
is left to end on its own (it closes its source), so Ctrl-C stops a run within a second."""
SCENES_AT_ONCE = 16
"""Images (each a new scene) already waiting are prepared up to this many at once: the detector runs once over
them (at batch 8 the network costs 0.6x per image what it costs at batch 1 on the 2-core host; 4 / 8 / 16 at
once: 93 / 102 / 105 images/s on a folder of 500, against 87 one at a time)."""


@dataclass(frozen=True)
class _Submitted:
    """A batch handed to the backend; its poses come from `job` once it has run."""

    items: list[Item]
    job: Callable[[], list[Pose]]


@dataclass(frozen=True)
class _Failure:
    error: BaseException


_DONE = object()


class PoseStream:
    """Poses from one or more sources, as an iterator of `Result`s, with sinks called on the way.

    `sources`: paths, URLs or camera indices (see `open_source`); stream ids are `names` or
    `s0`, `s1`, ... in the order given. `crop`: `auto` (the person detector on every image; on videos,
    track each person's last confident pose and detect on the first frame, when one is lost and every
    `redetect` frames), `detect` (detect on every frame), `track+detect` (track and detect, also on images),
    `track` (no detector: follow the centred person), `center` or `x,y,w,h` (see `streampose.crop`). With
    tracking, a frame's crop uses the newest pose known when it is prepared, which in a batched pipeline can
    be a few frames old (and vary a little between runs); `center` or a box are exactly repeatable.
    `people`: pose up to this many people a frame (the most confident detections, in one batch; ids follow
    them across frames). `detector`: the detector model (name, checkpoint or engine) or an open
    `PersonDetector` (the caller closes it), used where the crop needs one. `refine`: where the detector finds
    people on every frame (images; `detect`), a second look at each, framed by the pose of the first and at the
    box's own crop (three times the pose network's work; more accurate, see `crop.DetectCrop`). `candidates`:
    where the detector places people (every image; on videos, where the tracker detects someone new), that many
    detections beyond `people` posed too, the most plausible people kept (see `crop.CANDIDATES`).
    `live`: play files at their native rate as live sources (cameras and URLs are always live).
    `reconnect`: how cameras and network streams are reopened when they fail (None: they end there).
    A single source that cannot be opened raises `SourceError`; among several, it ends its own stream with
    that error (start, then error) and the others run.
    """

    def __init__(
        self,
        sources: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        model: Checkpoint | str | os.PathLike[str] = models.DEFAULT,
        backend: str = "auto",
        device: str = "cpu",
        crop: str = "auto",
        people: int = 1,
        detector: str | os.PathLike[str] | PersonDetector = models.DETECTOR,
        redetect: int = REDETECT,
        refine: bool = True,
        candidates: int = CANDIDATES,
        max_batch: int = 4,
        max_wait_ms: float = 0.0,
        flip: bool = False,
        smooth: bool = False,
        live: bool = False,
        reconnect: Reconnect | None = Reconnect(),  # noqa: B008 (frozen: sharing it is safe)
        names: Sequence[str] | None = None,
        sinks: Sequence[Sink] = (),
        on_pose: Callable[[Result], None] | None = None,
        estimator: PoseEstimator | None = None,
        jobs: int | None = None,
    ) -> None:
        """`estimator` reuses an open model (then `model`, `backend`, `device`, `flip` and `jobs` are ignored and
        the caller closes it); otherwise the stream opens and closes its own. `jobs`: batches the backend runs
        side by side (see `backends.create`); default: as many as it runs best when every source is a file
        (throughput), 1 when one is live (each frame's shortest wait)."""
        specs = [sources] if isinstance(sources, str | os.PathLike) else list(sources)
        if not specs:
            raise ValueError("no sources given")
        if max_batch < 1 or max_wait_ms < 0:
            raise ValueError(f"need max_batch >= 1 and max_wait_ms >= 0, got {max_batch} and {max_wait_ms}")
        if people < 1 or candidates < 0:
            raise ValueError(f"people must be >= 1 and candidates >= 0, got {people} and {candidates}")
        ids = list(names) if names is not None else [f"s{i}" for i in range(len(specs))]
        if len(ids) != len(specs) or len(set(ids)) != len(ids):
            raise ValueError(f"need {len(specs)} distinct stream names, got {ids}")
        crop_spec = parse_crop(crop)
        crop_spec.check(people)
        self.sinks = list(sinks) + ([_CallbackSink(on_pose)] if on_pose else [])
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._streams: list[Stream] = []
        self.reconnect = reconnect
        timeout = reconnect.timeout if reconnect else None
        opened: list[Source] = []
        self._owns_estimator = estimator is None
        self._owns_detector = not isinstance(detector, PersonDetector)
        self.detector: PersonDetector | None = None
        try:
            for spec in specs:
                try:
                    opened.append(open_source(spec, live) if timeout is None else open_source(spec, live, timeout))
                except SourceError as e:
                    if len(specs) == 1:
                        raise
                    opened.append(Unopenable(os.fspath(spec), e))
            if jobs is None:
                jobs = 1 if any(src.info.live for src in opened) else 0
            self.estimator, self.detector = _open_models(estimator, model, backend, device, flip, jobs,
                                                         detector if crop_spec.needs_detector else None)
            if people > self.estimator.max_batch:
                raise ValueError(f"--people {people} is more than the model's batch of {self.estimator.max_batch}")
            candidates = min(candidates, self.estimator.max_batch - people)  # a frame's crops fit one batch
            for sid, src in zip(ids, opened, strict=True):
                stats = StreamStats(sid, live=src.info.live, problems=src.problems)
                capacity = 1 if src.info.live else 2 * max_batch + 2
                policy = crop_spec.policy(src.info.scenes, self.detector, people, redetect, refine, candidates)
                self._streams.append(Stream(sid, src, policy, smooth,
                                             Inbox(self._cond, capacity, src.info.live, stats), stats))
        except BaseException:
            for src in opened:
                src.close()
            if self._owns_estimator and hasattr(self, "estimator"):
                self.estimator.close()
            if self._owns_detector and self.detector is not None:
                self.detector.close()
            raise
        # a frame's people (and candidates) go into one batch
        self.max_batch = max(min(max_batch, self.estimator.max_batch), people + candidates)
        self.max_wait = max_wait_ms / 1e3
        self._prepared: queue.Queue[object] = queue.Queue(maxsize=self.max_batch)
        # submitted batches wait here for the collector; the backend's own limit on jobs in flight holds
        # the submitter back, this bounds what is submitted but not yet collected
        self._submitted: queue.Queue[object] = queue.Queue(maxsize=max(1, self.estimator.backend.info.jobs))
        self._results: queue.Queue[object] = queue.Queue(maxsize=2 * self.max_batch + 4)
        self._threads: list[threading.Thread] = []
        self.cpu_seconds: dict[str, float] = {}
        """Thread CPU time per stage (read, preprocess, infer, collect), summed over streams, for benchmarks."""
        self._closed = False

    @property
    def stats(self) -> dict[str, StreamStats]:
        return {s.id: s.stats for s in self._streams}

    @property
    def infos(self) -> dict[str, SourceInfo]:
        return {s.id: s.source.info for s in self._streams}

    # --- the consumer --------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Result]:
        if self._threads:
            raise RuntimeError("a PoseStream can be iterated once")
        self._start()
        by_id = {s.id: s for s in self._streams}
        while True:
            item = self._results.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.error
            if isinstance(item, StreamEvent):
                st = by_id[item.stream].stats
                if item.kind == "start":
                    st.started = time.time()
                    for sink in self.sinks:
                        sink.start(item, st)
                elif not item.final:
                    st.reconnects += item.kind == "recovered"
                    for sink in self.sinks:
                        sink.notice(item, st)
                else:
                    st.ended, st.error = True, item.error
                    for sink in self.sinks:
                        sink.end(item, st)
                continue
            assert isinstance(item, Result)
            st = by_id[item.stream].stats
            st.delivered += 1
            st.latencies.append(time.time() - item.frame.t_capture)
            for sink in self.sinks:
                sink.pose(item, st)
            yield item

    def run(self, max_frames: int = 0) -> dict[str, StreamStats]:
        """Consume every result (sinks do the work), then close; `max_frames` > 0 stops early."""
        with self:
            for n, _ in enumerate(self, 1):
                if max_frames and n >= max_frames:
                    break
        return self.stats

    def close(self) -> None:
        """Stop every stage, close sources, backend and sinks. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        deadline = time.monotonic() + JOIN_S
        for t in self._threads:
            t.join(timeout=max(0.0, deadline - time.monotonic()))
        for s in self._streams:
            if not any(t.name == f"read-{s.id}" for t in self._threads):
                s.source.close()  # readers close their own source when they finish
        errors = []
        for sink in self.sinks:
            try:
                sink.close()
            except Exception as e:  # one failing output must not keep the others from closing
                errors.append(e)
        if self._owns_estimator:
            self.estimator.close()
        if self._owns_detector and self.detector is not None:
            self.detector.close()
        if errors:
            raise errors[0]

    def __enter__(self) -> PoseStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the stages ----------------------------------------------------------------------------
    def _start(self) -> None:
        for s in self._streams:
            self._threads.append(threading.Thread(target=self._read, args=(s,), name=f"read-{s.id}", daemon=True))
        self._threads.append(threading.Thread(target=self._stage, args=("preprocess", self._preprocess),
                                              name="preprocess", daemon=True))
        self._threads.append(threading.Thread(target=self._stage, args=("infer", self._infer),
                                              name="infer", daemon=True))
        self._threads.append(threading.Thread(target=self._stage, args=("collect", self._collect),
                                              name="collect", daemon=True))
        for t in self._threads:
            t.start()

    def _count_cpu(self, stage: str) -> None:
        with self._cond:
            self.cpu_seconds[stage] = self.cpu_seconds.get(stage, 0.0) + time.thread_time()

    def _stage(self, name: str, body: Callable[[], None]) -> None:
        """Run a stage; an unexpected error ends the run and is raised in the consumer."""
        try:
            body()
        except BaseException as e:
            self._stop.set()
            self._put(self._results, _Failure(e), force=True)
        finally:
            self._count_cpu(name)

    def _put(self, q: queue.Queue[object], item: object, force: bool = False) -> bool:
        """Blocking put that gives up when the runtime stops (unless `force`: failures must arrive)."""
        while force or not self._stop.is_set():
            try:
                q.put(item, timeout=POLL_S)
                return True
            except queue.Full:
                if force and self._stop.is_set():
                    _drain(q)
        return False

    def _read(self, s: Stream) -> None:
        try:
            read(s, self._stop, self.reconnect)
        finally:
            self._count_cpu("read")

    def _next_input(self, turn: int) -> tuple[Stream, Frame | StreamEvent] | None:
        """The next waiting item, taking streams in turn so none starves; None when all ended or stopping."""
        with self._cond:
            while not self._stop.is_set():
                open_streams = [s for s in self._streams if not s.finished]
                if not open_streams:
                    return None
                for k in range(len(self._streams)):
                    s = self._streams[(turn + k) % len(self._streams)]
                    if s.inbox.items:
                        item = s.inbox.items.popleft()
                        self._cond.notify_all()  # a blocked reader may continue
                        if isinstance(item, StreamEvent) and item.final:
                            s.finished = True
                        return s, item
                self._cond.wait(POLL_S)
        return None

    def _preprocess(self) -> None:
        turn = 0
        while (got := self._next_input(turn)) is not None:
            turn += 1
            s, item = got
            if isinstance(item, StreamEvent):
                if not self._put(self._prepared, item):
                    return
                continue
            frames = [item, *self._waiting_frames(s, SCENES_AT_ONCE - 1)] if s.source.info.scenes else [item]
            for prepared in prepare_all(self.estimator, s, frames):
                if not self._put(self._prepared, prepared):
                    return
        self._put(self._prepared, _DONE)

    def _waiting_frames(self, s: Stream, n: int) -> list[Frame]:
        """Up to `n` more frames of `s` already waiting, up to its next event (taken now, in order)."""
        out: list[Frame] = []
        with self._cond:
            while len(out) < n and s.inbox.items and isinstance(frame := s.inbox.items[0], Frame):
                out.append(frame)
                s.inbox.items.popleft()
            if out:
                self._cond.notify_all()  # a blocked reader may continue
        return out

    def _infer(self) -> None:
        """Gather batches and submit them; a backend that runs batches side by side has the next one
        started while the collector waits for the last."""
        pending: object = None
        while not self._stop.is_set():
            item = pending if pending is not None else self._get(self._prepared)
            pending = None
            if item is None:
                continue
            if not isinstance(item, Item):
                self._put(self._submitted, item)
                if item is _DONE:
                    return
                continue
            batch, crops = [item], len(item.prepared)
            deadline = time.perf_counter() + self.max_wait
            while crops < self.max_batch:
                remaining = deadline - time.perf_counter()
                try:
                    nxt = self._prepared.get(timeout=remaining) if remaining > 0 else self._prepared.get_nowait()
                except queue.Empty:
                    break
                if not isinstance(nxt, Item) or crops + len(nxt.prepared) > self.max_batch:
                    pending = nxt  # an event, the end, or a frame that does not fit: run what we have first
                    break
                batch.append(nxt)
                crops += len(nxt.prepared)
            batch = self._freshen(_newest_per_live_stream(batch))
            if batch and not self._put(self._submitted, _Submitted(batch, self._submit(batch))):
                return

    def _collect(self) -> None:
        """Wait for each submitted batch in order, decode its poses and pass them on, events in their place."""
        while not self._stop.is_set():
            item = self._get(self._submitted)
            if item is None:
                continue
            if not isinstance(item, _Submitted):
                if not self._put(self._results, item) or item is _DONE:
                    return
                continue
            for result in results(self.estimator, item.items, iter(item.job())):
                if not self._put(self._results, result):
                    return

    def _get(self, q: queue.Queue[object]) -> object:
        try:
            return q.get(timeout=POLL_S)
        except queue.Empty:
            return None

    def _submit(self, batch: list[Item]) -> Callable[[], list[Pose]]:
        """Start the batch of every crop of these frames (frames where no one was found add none)."""
        prepared = [p for it in batch for p in it.prepared]
        if not prepared:
            return list
        return self.estimator.submit(prepared)

    def _freshen(self, batch: list[Item]) -> list[Item]:
        """Live streams: swap each frame for the newest one waiting in its inbox, and drop frames older
        than one already inferred. Frames prepared while the model was busy are a model run old by
        now; without this, latency on a slow model would be several model runs instead of one."""
        out = []
        for it in batch:
            s = it.stream
            if not s.inbox.live:
                out.append(it)
                continue
            newer = take_newest(s, self._cond)
            if newer is not None:
                s.stats.dropped_batch += 1
                it = prepare(self.estimator, s, newer)
            if it.frame.index <= s.last_index:
                s.stats.dropped_batch += 1
                continue
            s.last_index = it.frame.index
            out.append(it)
        return out


def _open_models(estimator: PoseEstimator | None, model: Checkpoint | str | os.PathLike[str], backend: str,
                 device: str, flip: bool, jobs: int, detector: str | os.PathLike[str] | PersonDetector | None
                 ) -> tuple[PoseEstimator, PersonDetector | None]:
    """The pose model (`estimator`, or opened) and the person detector (None: none needed), the detector opened
    on a thread while the pose model opens: OpenVINO compiles without the GIL, so a start saves about a tenth of
    a second. Whatever opened is closed again if the other fails."""
    if not isinstance(detector, str | os.PathLike):
        est = estimator or PoseEstimator(model, backend=backend, device=device, flip=flip, jobs=jobs)
        return est, detector
    with ThreadPoolExecutor(1, thread_name_prefix="open-detector") as pool:
        opening = pool.submit(open_detector, detector, backend=backend, device=device)
        try:
            est = estimator or PoseEstimator(model, backend=backend, device=device, flip=flip, jobs=jobs)
        except BaseException:
            if opening.exception() is None:
                opening.result().close()
            raise
    try:
        return est, opening.result()
    except BaseException:
        if estimator is None:
            est.close()
        raise


def _newest_per_live_stream(batch: list[Item]) -> list[Item]:
    """Keep every frame of file streams, and only the newest frame of each live stream."""
    newest: dict[str, int] = {}
    for i, it in enumerate(batch):
        if it.stream.inbox.live:
            newest[it.stream.id] = i
    kept = []
    for i, it in enumerate(batch):
        if it.stream.inbox.live and newest[it.stream.id] != i:
            it.stream.stats.dropped_batch += 1
        else:
            kept.append(it)
    return kept


def _drain(q: queue.Queue[object]) -> None:
    try:
        while True:
            q.get_nowait()
    except queue.Empty:
        pass


class _CallbackSink(Sink):
    def __init__(self, fn: Callable[[Result], None]) -> None:
        self.fn = fn

    def pose(self, result: Result, stats: StreamStats) -> None:
        self.fn(result)
