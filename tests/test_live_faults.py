"""Promise 3, live faults, on real sockets: a network stream served by a local HTTP server that stalls
mid-stream or refuses to serve is reopened with backoff and reported on `ctl/<stream>`; subscribers that
are slow, stop reading or vanish never stall the run or grow its memory, and one that joins late gets
the stream from then on."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Faulty, count_frames, cut, serve, synced

import streampose
from streampose.publish import Publisher
from streampose.runtime import PoseStream, Result, Sink, StreamStats
from streampose.sinks import PublishSink
from streampose.soak import rss_bytes
from streampose.sources import Reconnect
from streampose.subscriber import Subscriber
from streampose.wire import ControlMessage, PoseMessage


@pytest.fixture(scope="module")
def ts_clip(studio_clip: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cut(studio_clip, tmp_path_factory.mktemp("live") / "live.ts", 40)


@pytest.fixture(scope="module")
def estimator() -> Iterator[streampose.PoseEstimator]:
    with streampose.PoseEstimator("hg2-lite", backend="torch") as est:
        yield est


FAST = Reconnect(attempts=3, delay=0.2, timeout=1.0)


def run_live(server: Faulty, est: streampose.PoseEstimator) -> tuple[list[ControlMessage], StreamStats, list[int],
                                                                       float]:
    with Publisher("tcp://127.0.0.1:*") as pub, Subscriber(pub.endpoint, control=True, timeout=0.5) as sub:
        synced(pub, sub)
        indices: list[int] = []
        t = time.monotonic()
        stream = PoseStream(server.url, estimator=est, reconnect=FAST, sinks=[PublishSink(pub)],
                            on_pose=lambda r: indices.append(r.frame.index))
        stats = stream.run()["s0"]
        elapsed = time.monotonic() - t
        ctl = [m for m in sub if isinstance(m, ControlMessage) and m.stream == "s0"]
    server.released.set()
    server.shutdown()
    return ctl, stats, indices, elapsed


def test_stalled_stream_is_reopened_with_a_ctl_error_then_recovery(ts_clip: Path,
                                                                  estimator: streampose.PoseEstimator) -> None:
    server = serve(ts_clip, ["stall", "full"])
    ctl, stats, indices, elapsed = run_live(server, estimator)
    print(f"stall then recovery: {stats.delivered} frames, {stats.dropped} dropped, {elapsed:.1f} s, "
          f"ctl {[(m.event, m.data.get('retrying') or m.data.get('recovered')) for m in ctl]}")
    assert server.requests == ["stall", "full"]
    assert [m.event for m in ctl if m.event != "stats"] == ["start", "error", "start", "eos"]
    error, recovered = ctl[1], ctl[2]
    assert error.data["retrying"] is True and error.data["attempt"] == 1 and error.data["retry_in"] == 0.2
    assert "reading failed" in error.data["message"] and recovered.data["recovered"] is True
    assert stats.error is None and stats.reconnects == 1
    assert indices == sorted(set(indices))  # indices go on after the reconnection, never back
    assert stats.delivered + stats.dropped > len(count_frames(ts_clip))  # half a stream, then all of it
    assert elapsed < 20


def test_stream_that_stays_away_ends_with_an_error_after_the_backoff(ts_clip: Path,
                                                                     estimator: streampose.PoseEstimator) -> None:
    server = serve(ts_clip, ["stall", "503"])
    ctl, stats, indices, elapsed = run_live(server, estimator)
    retries = [m for m in ctl if m.event == "error" and m.data.get("retrying")]
    assert [m.data["retry_in"] for m in retries] == [0.2, 0.4, 0.8]  # backing off
    assert ctl[-1].event == "error" and "gave up after 3 reconnection attempts" in ctl[-1].data["message"]
    assert server.requests == ["stall", "503", "503", "503"]
    assert stats.error and indices
    assert elapsed >= 1.4 and elapsed < 20


class LateJoiner(Sink):
    """Connects a subscriber once the run is `at` frames in, and reads what it gets from then on."""

    def __init__(self, endpoint: str, at: int) -> None:
        self.endpoint, self.at, self.got, self.thread = endpoint, at, [], threading.Thread(target=self._read)

    def pose(self, result: Result, stats: StreamStats) -> None:
        if result.frame.index == self.at:
            self.thread.start()

    def _read(self) -> None:
        with Subscriber(self.endpoint, control=True, timeout=5) as sub:
            for msg in sub:
                self.got.append(msg)
                if isinstance(msg, ControlMessage) and msg.event == "eos":
                    return


def slow_reader(endpoint: str, got: list[float], ready: threading.Event) -> None:
    """Reads a message every 100 ms, far slower than the run publishes; notes when it got each."""
    with Subscriber(endpoint, control=True, timeout=2) as sub:
        while not ready.is_set() and sub.recv(timeout=0.05) is None:
            pass
        ready.set()
        for _ in sub:
            got.append(time.monotonic())
            time.sleep(0.1)


def test_stuck_slow_vanishing_and_late_subscribers_never_stall_the_run(basketball_clip: Path, tmp_path: Path,
                                                                        estimator: streampose.PoseEstimator) -> None:
    import zmq

    clip = cut(basketball_clip, tmp_path / "clip.mp4", 60)
    n = len(count_frames(clip))
    t = time.monotonic()
    PoseStream(str(clip), estimator=estimator).run()
    alone = time.monotonic() - t
    ctx = zmq.Context.instance()
    with Publisher("tcp://127.0.0.1:*") as pub:  # the default hwm: a reader that keeps up loses nothing
        stuck = ctx.socket(zmq.SUB)  # subscribes, then never reads
        stuck.setsockopt(zmq.RCVHWM, 1)
        stuck.setsockopt(zmq.SUBSCRIBE, b"")
        stuck.connect(pub.endpoint)
        vanishing = Subscriber(pub.endpoint, control=True)
        synced(pub, vanishing)
        vanishing.close()  # gone without a word
        slow_got: list[float] = []
        ready = threading.Event()
        slow = threading.Thread(target=slow_reader, args=(pub.endpoint, slow_got, ready))
        slow.start()
        while not ready.wait(0.05):
            pub.send(ControlMessage("sync", "stats"))
        late = LateJoiner(pub.endpoint, at=20)
        t = time.monotonic()
        stats = PoseStream(str(clip), estimator=estimator, sinks=[late, PublishSink(pub)]).run()["s0"]
        ended = time.monotonic()
        elapsed = ended - t
        late.thread.join(timeout=30)
        slow.join(timeout=60)
        stuck.close(linger=0)
    frames = [m.frame for m in late.got if isinstance(m, PoseMessage)]
    print(f"{n} frames in {elapsed:.1f} s ({alone:.1f} s without readers); the late joiner got frames "
          f"{frames[0]}..{frames[-1]}, the slow reader {len(slow_got)} messages")
    assert stats.delivered == n
    assert len(slow_got) >= n and slow_got[-1] > ended + 1  # still reading long after the run had ended
    assert elapsed < 2 * alone + 1  # the readers cost the run nothing much
    assert frames and frames[0] > 0 and frames == list(range(frames[0], n))  # from when it joined, all of it
    assert isinstance(late.got[-1], ControlMessage) and late.got[-1].event == "eos"


def publish_to_stuck_reader(hwm: int, messages: int = 20_000) -> float:
    """MiB this process grows by while publishing `messages` of 10 kB to a connected reader that reads none."""
    import zmq

    big = ControlMessage("s0", "stats", {"pad": "x" * 10_000})
    with Publisher("tcp://127.0.0.1:*", hwm=hwm) as pub:
        stuck = zmq.Context.instance().socket(zmq.SUB)
        stuck.setsockopt(zmq.RCVHWM, 1)
        stuck.setsockopt(zmq.SUBSCRIBE, b"")
        stuck.connect(pub.endpoint)
        while not stuck.poll(50):  # connected and subscribed: it hears a probe; from now on it reads nothing
            pub.send(ControlMessage("s0", "stats"))
        stuck.recv_multipart()
        before = rss_bytes()
        for _ in range(messages):
            pub.send(big)
        growth = (rss_bytes() - before) / 2**20
        stuck.close(linger=0)
    return growth


def growth_in_a_fresh_process(hwm: int) -> float:
    """`publish_to_stuck_reader` in a new interpreter: memory freed by earlier tests in this one would
    hide growth (the allocator reuses it before RSS grows)."""
    code = f"from test_live_faults import publish_to_stuck_reader; print(publish_to_stuck_reader({hwm}))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       cwd=Path(__file__).parent)
    assert r.returncode == 0, r.stderr
    return float(r.stdout.split()[-1])


def test_a_reader_that_stops_reading_costs_bounded_memory() -> None:
    """200 MB published to a reader that reads nothing: the high-water mark keeps what is queued for it to
    `hwm` messages. The control run, with a mark above the message count, shows the measurement sees it."""
    bounded, unbounded = growth_in_a_fresh_process(100), growth_in_a_fresh_process(1_000_000)
    print(f"RSS growth publishing 200 MB to a stuck reader: {bounded:.1f} MiB with hwm 100, "
          f"{unbounded:.1f} MiB with hwm 1,000,000")
    assert bounded < 40 < 100 < unbounded
