"""Publisher and Subscriber over real ZeroMQ sockets on loopback, and `streampose listen` as a real process."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

import msgpack
import numpy as np
import pytest
import zmq
from conftest import free_endpoint, synced

from streampose.publish import Publisher, PublishError, binds_all_interfaces
from streampose.subscriber import Subscriber
from streampose.wire import ControlMessage, Person, PoseMessage


def pose(stream: str = "s0", frame: int = 0, people: int = 1) -> PoseMessage:
    rng = np.random.default_rng(frame)
    found = tuple(Person(i, rng.random((14, 3), dtype=np.float32), (1.0 + i, 2.0, 300.0, 300.0), 0.5)
                  for i in range(people))
    return PoseMessage(stream=stream, frame=frame, pts=frame / 25, t_capture=time.time(), t_publish=time.time(),
                       size=(640, 480), joints="LSP14", people=found)


@pytest.mark.parametrize("fmt", ["msgpack", "json"])
def test_round_trip_in_both_formats(fmt: str) -> None:
    with Publisher("tcp://127.0.0.1:*", fmt=fmt) as pub, Subscriber(pub.endpoint, control=True, timeout=2) as sub:  # type: ignore[arg-type]
        synced(pub, sub)
        sent = [pose("s0", i, people=i % 3) for i in range(5)]  # 0, 1 or 2 people a frame
        for m in sent:
            pub.send(m)
        pub.send(ControlMessage("s0", "eos", {"frames": 5}))
        got = [sub.recv(timeout=2) for _ in range(6)]
    for a, b in zip(sent, got[:5], strict=True):
        assert isinstance(b, PoseMessage) and b.v == 2
        assert (b.stream, b.frame, b.size, b.box, b.joints) == (a.stream, a.frame, a.size, a.box, a.joints)
        assert [(p.id, p.box, p.score) for p in b.people] == [(p.id, p.box, p.score) for p in a.people]
        for p, q in zip(a.people, b.people, strict=True):
            np.testing.assert_array_equal(q.kp, p.kp)
            assert q.kp.dtype == np.float32
    assert got[5] == ControlMessage("s0", "eos", {"frames": 5})


@pytest.mark.parametrize("fmt", ["msgpack", "json"])
def test_version_1_messages_are_still_read(fmt: str) -> None:
    """A v1 publisher (one person's fields at the top level) reaches v2 subscribers as a frame of one person."""
    kp = np.arange(42, dtype=np.float32).reshape(14, 3)
    v1 = {"v": 1, "stream": "s0", "frame": 3, "pts": 0.12, "t_capture": 1.0, "t_publish": 1.5, "size": [640, 480],
          "joints": "LSP14", "kp": kp.tobytes() if fmt == "msgpack" else kp.tolist(), "box": [1, 2, 3, 4],
          "score": 0.7}
    payload = msgpack.packb(v1, use_bin_type=True) if fmt == "msgpack" else json.dumps(v1).encode()
    with Publisher("tcp://127.0.0.1:*") as pub, Subscriber(pub.endpoint, control=True, timeout=2) as sub:
        synced(pub, sub)
        pub._socket.send_multipart([b"pose/s0", payload])  # a raw v1 message, as an old publisher sends it
        msg = sub.recv(timeout=2)
    assert isinstance(msg, PoseMessage) and msg.v == 1 and msg.frame == 3 and len(msg.people) == 1
    person = msg.people[0]
    assert (person.id, person.box, person.score) == (0, (1, 2, 3, 4), 0.7)
    np.testing.assert_array_equal(person.kp, kp)
    np.testing.assert_array_equal(msg.kp, kp)  # the v1 accessors read the first person


def test_stream_filter_is_exact_and_control_is_opt_in() -> None:
    with Publisher("tcp://127.0.0.1:*") as pub, Subscriber(pub.endpoint, streams=["s1"], timeout=0.5) as sub:
        for _ in range(200):  # slow joiner: until a pose for s1 arrives
            pub.send(pose("s1", 0))
            if sub.recv(timeout=0.05) is not None:
                break
        while sub.recv(timeout=0.1) is not None:
            pass
        pub.send(pose("s10", 1))  # shares the prefix pose/s1
        pub.send(ControlMessage("s1", "eos"))  # control not asked for
        pub.send(pose("s1", 2))
        got = list(sub)
    assert [(m.stream, m.frame) for m in got if isinstance(m, PoseMessage)] == [("s1", 2)]
    assert all(isinstance(m, PoseMessage) for m in got)


def test_malformed_and_oversized_messages_are_skipped_not_raised() -> None:
    ctx = zmq.Context.instance()
    raw = ctx.socket(zmq.PUB)
    port = raw.bind_to_random_port("tcp://127.0.0.1")
    try:
        with Subscriber(f"tcp://127.0.0.1:{port}", control=True, timeout=0.5, max_bytes=4096) as sub:
            good = msgpack.packb({"v": 1, "stream": "x", "event": "stats"})
            for _ in range(200):
                raw.send_multipart([b"ctl/x", good])
                if sub.recv(timeout=0.05) is not None:
                    break
            while sub.recv(timeout=0.1) is not None:
                pass
            hostile = [
                [b"pose/s0", b"\xc1garbage"],                                    # not msgpack
                [b"pose/s0", msgpack.packb({"v": 2, "stream": "s0"})],            # unknown version
                [b"pose/s0", msgpack.packb({"v": 1, "stream": "s0", "frame": "x"})],  # mistyped
                [b"pose/s0", b"{" + b" " * 3000 + b"}"],                         # not a pose map
                [b"pose/s0", msgpack.packb({"v": 1, "stream": "s0", "pad": b"x" * 3500})],
                [b"pose/s0"],                                                    # one frame
            ]
            for parts in hostile:
                raw.send_multipart(parts)
            raw.send_multipart([b"ctl/x", msgpack.packb({"v": 1, "stream": "x", "event": "eos"})])
            got = list(sub)
            assert [m.event for m in got if isinstance(m, ControlMessage)] == ["eos"]
            assert sub.rejected == len(hostile)
            assert sub.last_error
    finally:
        raw.close(linger=0)


def test_latest_keeps_the_newest_pose_per_stream_and_every_control_message() -> None:
    with Publisher("tcp://127.0.0.1:*", hwm=1000) as pub, \
            Subscriber(pub.endpoint, control=True, timeout=0.5, latest=True) as sub:
        synced(pub, sub)
        for i in range(50):
            pub.send(pose("a", i))
            pub.send(pose("b", i))
        pub.send(ControlMessage("a", "eos"))
        time.sleep(0.3)  # let everything arrive so the reader is "behind"
        got = list(sub)
    poses = [(m.stream, m.frame) for m in got if isinstance(m, PoseMessage)]
    assert ("a", 49) in poses and ("b", 49) in poses
    assert len(poses) < 20  # stale poses skipped
    assert [m.event for m in got if isinstance(m, ControlMessage)] == ["eos"]


def test_a_subscriber_that_stops_reading_never_blocks_the_publisher() -> None:
    with Publisher("tcp://127.0.0.1:*", hwm=10) as pub, Subscriber(pub.endpoint, control=True, timeout=0.5) as sub:
        synced(pub, sub)
        before, t = pub.sent, time.perf_counter()
        for i in range(20000):  # the subscriber reads nothing meanwhile
            pub.send(pose("s0", i))
        elapsed = time.perf_counter() - t
        received = sum(1 for _ in sub)
    assert pub.sent - before == 20000
    print(f"received {received} of 20000 in {elapsed:.2f} s")
    assert received < 20000  # the excess was dropped for this reader, not queued without bound
    assert elapsed < 30  # generous: only a blocked publisher would take this long


def test_bind_errors_and_wide_binds() -> None:
    with Publisher("tcp://127.0.0.1:*") as pub:
        with pytest.raises(PublishError, match="pick another port"):
            Publisher(pub.endpoint)
    with pytest.raises(PublishError, match="cannot publish on nonsense"):
        Publisher("nonsense")
    assert binds_all_interfaces("tcp://*:5555") and binds_all_interfaces("tcp://0.0.0.0:1")
    assert not binds_all_interfaces("tcp://127.0.0.1:5555") and not binds_all_interfaces("ipc:///tmp/x")


def test_listen_process_records_a_run_to_its_end(tmp_path: Path, studio_clip: Path) -> None:
    """`streampose listen` and `streampose run` as two real processes on one loopback port."""
    endpoint = free_endpoint()
    out = tmp_path / "poses.jsonl"
    listen = subprocess.Popen([sys.executable, "-m", "streampose.cli", "listen", endpoint, "--jsonl", str(out),
                               "--until-eos", "--control", "--timeout", "60"], stderr=subprocess.PIPE, text=True)
    try:
        # the listener reconnects until `run` binds; the model loads after the bind, so it joins in time
        run = subprocess.run([sys.executable, "-m", "streampose.cli", "run", str(studio_clip), "--publish", endpoint,
                              "--max-frames", "30", "--backend", "torch"], capture_output=True, text=True, timeout=120)
        _, err = listen.communicate(timeout=60)
    finally:
        listen.kill()
    assert run.returncode == 0, run.stderr
    assert listen.returncode == 0, err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    poses = [r for r in rows if "people" in r]
    assert rows[-1]["event"] == "eos"
    frames = [r["frame"] for r in poses]
    assert frames == list(range(frames[0], 30))  # in order, none missing once joined
    assert all(np.asarray(p["kp"]).shape == (14, 3) for r in poses for p in r["people"])
    assert sum(len(r["people"]) == 1 for r in poses) >= 0.9 * len(poses)  # the person is found


def test_joint_angle_example_consumer() -> None:
    """tools/joint_angle.py as a real subscriber process, on a pose with a known right-angled elbow."""
    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root / "tools"))
    try:
        from joint_angle import angle, joint_angle
    finally:
        sys.path.pop(0)
    assert angle((1, 0), (0, 0), (0, 1)) == pytest.approx(90)
    assert angle((1, 0), (0, 0), (-2, 0)) == pytest.approx(180)
    assert angle((1, 1), (0, 0), (3, 3)) == pytest.approx(0, abs=1e-5)

    msg = pose("s0", 0)
    kp = msg.kp.copy()
    kp[:, 2] = 0.9
    kp[8, :2], kp[7, :2], kp[6, :2] = (100, 100), (100, 200), (200, 200)  # r_shoulder, r_elbow, r_wrist
    kp[11, 2] = 0.0  # l_wrist not confident: the left elbow has no angle
    assert joint_angle(kp, "LSP14", "l_elbow") is None
    two = (Person(0, kp, (0, 0, 1, 1), 0.9), Person(3, kp, (0, 0, 1, 1), 0.8))
    with Publisher("tcp://127.0.0.1:*") as pub:
        tool = subprocess.Popen([sys.executable, str(root / "tools" / "joint_angle.py"), pub.endpoint,
                                 "--timeout", "1"], stdout=subprocess.PIPE, text=True)
        for i in range(100):  # until the tool has surely joined; it exits 1 s after the last pose
            pub.send(dataclasses.replace(msg, frame=i, people=two))
            time.sleep(0.02)
        out, _ = tool.communicate(timeout=30)
    lines = out.splitlines()
    assert tool.returncode == 0 and lines
    assert all(line.split()[-2:] == ["r_elbow", "90.0"] for line in lines)
    assert {line.split()[4] for line in lines} == {"0", "3"}  # every person of each frame


def test_close_flushes_before_the_process_leaves() -> None:
    """`close` returns once queued messages are out (or LINGER_MS passed): the run leaves with os._exit after a
    signal, so a message merely queued at close (the end of stream) would die with the process."""
    endpoint = free_endpoint()
    child = ("import os, sys, time\n"
             "from streampose.publish import Publisher\n"
             "from streampose.wire import ControlMessage\n"
             "pub = Publisher(sys.argv[1])\n"
             "time.sleep(1.0)\n"  # the reader has joined
             "for i in range(50):\n"
             "    pub.send(ControlMessage('s0', 'progress', {'i': i, 'pad': 'x' * 20000}))\n"
             "pub.send(ControlMessage('s0', 'eos', {'interrupted': True}))\n"
             "pub.close()\n"
             "os._exit(0)\n")
    with Subscriber(endpoint, control=True, timeout=3) as sub:
        proc = subprocess.run([sys.executable, "-c", child, endpoint], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        got = list(sub)
    assert [m.event for m in got if isinstance(m, ControlMessage)][-1:] == ["eos"] and len(got) == 51
