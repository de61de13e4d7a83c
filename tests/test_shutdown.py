"""Promise 5, clean shutdown: SIGINT / SIGTERM to a real `streampose run` process in mid-run leaves a
playable video, parseable JSON lines and a published end-of-stream, and the process exits within 2 s."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import av
import pytest
from conftest import EXE, cut, free_endpoint, interruptible, serve

from streampose.subscriber import Subscriber
from streampose.wire import ControlMessage, PoseMessage


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_flushes_outputs_publishes_eos_and_exits_in_2s(studio_clip: Path, tmp_path: Path,
                                                              sig: signal.Signals, code: int) -> None:
    out, kp, endpoint = tmp_path / "out.mp4", tmp_path / "k.jsonl", free_endpoint()
    with Subscriber(endpoint, control=True, timeout=0.5) as sub:
        run = subprocess.Popen([EXE, "run", str(studio_clip), "--backend", "torch", "--save", str(out),
                                "--keypoints", str(kp), "--publish", endpoint],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, preexec_fn=interruptible)
        try:
            got: list[PoseMessage | ControlMessage] = []
            deadline = time.monotonic() + 120
            while sum(isinstance(m, PoseMessage) for m in got) < 10:  # well into the run
                assert time.monotonic() < deadline and run.poll() is None, "the run never got going"
                if (msg := sub.recv(timeout=0.5)) is not None:
                    got.append(msg)
            t = time.monotonic()
            run.send_signal(sig)
            _, err = run.communicate(timeout=30)
            elapsed = time.monotonic() - t
        finally:
            run.kill()
        got.extend(sub)
    assert run.returncode == code, err
    assert "Traceback" not in err
    print(f"{sig.name}: exited in {elapsed:.2f} s after {len(got)} messages")
    assert elapsed < 2.0, f"took {elapsed:.2f} s to exit"
    eos = [m for m in got if isinstance(m, ControlMessage) and m.event == "eos"]
    assert len(eos) == 1 and eos[0].data["interrupted"] is True
    rows = [json.loads(line) for line in kp.read_text().splitlines()]  # every line parses
    assert [r["frame"] for r in rows] == list(range(len(rows))) and len(rows) >= 9  # published before written
    with av.open(str(out)) as c:  # the partial video plays to its end
        frames = sum(1 for _ in c.decode(c.streams.video[0]))
    assert abs(frames - len(rows)) <= 1  # the signal may land between the two sinks of one frame
    assert len(rows) < 399  # it really was cut short


def test_ctrl_c_while_a_network_source_is_stalled_still_exits_in_2s(studio_clip: Path, tmp_path: Path) -> None:
    """The reader is blocked in a network read that would wait 10 s for data: Ctrl-C must not wait for it."""
    server = serve(cut(studio_clip, tmp_path / "live.ts", 40), ["stall"])  # half the stream, then silence
    endpoint = free_endpoint()
    try:
        with Subscriber(endpoint, control=True, timeout=0.5) as sub:
            run = subprocess.Popen([EXE, "run", server.url, "--backend", "torch", "--publish", endpoint],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                   preexec_fn=interruptible)
            try:
                deadline = time.monotonic() + 120
                while not isinstance(sub.recv(timeout=0.5), PoseMessage):
                    assert time.monotonic() < deadline and run.poll() is None, "the run never got going"
                while sub.recv(timeout=1.0) is not None:  # until the stream has gone quiet: the reader is stuck
                    pass
                t = time.monotonic()
                run.send_signal(signal.SIGINT)
                _, err = run.communicate(timeout=30)
                elapsed = time.monotonic() - t
            finally:
                run.kill()
            got = list(sub)
    finally:
        server.released.set()
        server.shutdown()
    print(f"SIGINT with a stalled source: exited in {elapsed:.2f} s")
    assert run.returncode == 130 and "Traceback" not in err, err
    assert elapsed < 2.0, f"took {elapsed:.2f} s to exit"
    assert [m.data.get("interrupted") for m in got if isinstance(m, ControlMessage) and m.event == "eos"] == [True]
