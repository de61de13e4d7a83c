"""`streampose proxy` as a real process between real `streampose run --connect` processes and real subscribers:
every message of every run reaches every reader, in order per stream; with CURVE, only admitted keys get in."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import EXE, count_frames, cut, free_endpoint, interruptible, one_line_error, shared_file, sp

from streampose import curve
from streampose.publish import Publisher
from streampose.subscriber import Subscriber
from streampose.wire import ControlMessage, PoseMessage


def start_proxy(*extra: str) -> tuple[subprocess.Popen[str], str, str]:
    front, back = free_endpoint(), free_endpoint()
    proc = subprocess.Popen([EXE, "proxy", "--frontend", front, "--backend", back, *extra], stderr=subprocess.PIPE,
                            text=True, preexec_fn=interruptible)
    assert proc.stderr is not None
    line = proc.stderr.readline()  # it says where it listens once both sides are bound
    assert "readers read" in line, line + proc.stderr.read()
    return proc, front, back


def stop(proc: subprocess.Popen[str]) -> str:
    """Ctrl-C: the proxy's normal stop (exit 0, with what it forwarded)."""
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    return err


def sync(front: str, readers: list[Subscriber], keys: Path | None = None) -> None:
    """Until each reader hears a probe sent through the proxy (subscriptions travel before data can)."""
    with Publisher(front, connect=True, curve_keys=keys) as probe:
        for reader in readers:
            for _ in range(200):
                probe.send(ControlMessage("probe", "stats"))
                if reader.recv(timeout=0.05) is not None:
                    break
            else:
                raise AssertionError("a reader never heard the proxy")
        for reader in readers:
            while reader.recv(timeout=0.1) is not None:
                pass


def collect(reader: Subscriber, streams: set[str], seconds: float = 120) -> dict[str, list[int]]:
    """The frame indices of each stream's poses until every stream has ended."""
    frames: dict[str, list[int]] = {s: [] for s in streams}
    ended: set[str] = set()
    deadline = time.monotonic() + seconds
    while ended != streams and time.monotonic() < deadline:
        msg = reader.recv(timeout=1)
        if isinstance(msg, PoseMessage) and msg.stream in streams:
            frames[msg.stream].append(msg.frame)
        elif isinstance(msg, ControlMessage) and msg.stream in streams and msg.event in ("eos", "error"):
            ended.add(msg.stream)
    return frames


def run_into(front: str, clip: Path, name: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([EXE, "run", str(clip), "--name", name, "--publish", front, "--connect", "--crop", "center",
                             *extra], stderr=subprocess.PIPE, text=True)


def test_two_runs_through_the_proxy_reach_two_readers_whole_and_in_order(data: Path, tmp_path: Path) -> None:
    clips = {"court": cut(shared_file(data, "video/basketball_240p.mp4"), tmp_path / "court.mp4", 60),
             "studio": cut(shared_file(data, "video/single_person_studio.mp4"), tmp_path / "studio.mp4", 50)}
    proxy, front, back = start_proxy()
    try:
        with Subscriber(back, control=True) as one, Subscriber(back, control=True) as two:
            sync(front, [one, two])
            runs = [run_into(front, clip, name) for name, clip in clips.items()]
            got = [collect(one, set(clips)), collect(two, set(clips))]
            for run in runs:
                _, err = run.communicate(timeout=120)
                assert run.returncode == 0, err
                assert "no proxy answered" not in err
    finally:
        err = stop(proxy)
    for frames in got:  # every message of both runs, in order per stream, for each reader
        for name, clip in clips.items():
            assert frames[name] == list(range(len(count_frames(clip)))), name
    forwarded = int(err.split("forwarding ")[1].split()[0])
    assert forwarded >= sum(len(count_frames(c)) for c in clips.values())


def test_curve_on_both_sides_admits_the_keyed_run_and_reader_only(data: Path, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    for name in ("client", "cam"):  # a reader and a run, both admitted
        assert sp("keys", str(keys), "--name", name).returncode == 0
    stranger = tmp_path / "stranger"  # the server's public key, but a keypair nobody admitted
    curve.generate(stranger)
    (stranger / "server.key").write_bytes((keys / "server.key").read_bytes())
    clip = cut(shared_file(data, "video/basketball_240p.mp4"), tmp_path / "clip.mp4", 30)
    proxy, front, back = start_proxy("--curve-keys", str(keys))
    try:
        with Subscriber(back, control=True, curve_keys=keys) as reader, \
                Subscriber(back, control=True, curve_keys=stranger) as unknown, \
                Subscriber(back, control=True) as plain:
            sync(front, [reader], keys=keys / "cam.key_secret")
            run = run_into(front, clip, "cam", "--curve-keys", str(keys / "cam.key_secret"))
            frames = collect(reader, {"cam"})["cam"]
            _, err = run.communicate(timeout=120)
            assert run.returncode == 0, err
            leaked = [m for sub in (unknown, plain) for m in iter(lambda s=sub: s.recv(timeout=0.5), None)]
            # a run with a key the proxy does not admit is not heard
            intruder = run_into(front, clip, "intruder", "--curve-keys", str(stranger))
            _, err = intruder.communicate(timeout=120)
            assert "no proxy answered" in err
            heard = [m.stream for m in iter(lambda: reader.recv(timeout=0.5), None)]
    finally:
        stop(proxy)
    assert frames == list(range(30))
    assert leaked == [] and "intruder" not in heard


def test_proxy_endpoints_are_checked_and_a_taken_port_is_one_line() -> None:
    assert "port" in one_line_error(sp("proxy", "--frontend", "tcp://127.0.0.1:99999"), code=2)
    proxy, front, _ = start_proxy()
    try:
        line = one_line_error(sp("proxy", "--frontend", front, "--backend", free_endpoint()))
        assert "cannot bind" in line and front in line
    finally:
        stop(proxy)
    with pytest.raises(OSError, match="cannot publish to"):
        Publisher("tcp://*:5556", connect=True)
