"""Promise 7, fuzzing: the subscriber's decoder on random and mutated messages (hypothesis), the real
Subscriber on a socket full of them, and the command line's argument parsing on bad values."""

from __future__ import annotations

import contextlib
import io
import math
import time

import msgpack
import numpy as np
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streampose.cli import build_parser
from streampose.subscriber import Subscriber
from streampose.wire import ControlMessage, Message, Person, PoseMessage, WireError, decode, encode

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

finite = st.floats(allow_nan=False, allow_infinity=False, width=32)
people = st.builds(
    lambda person, k, xs, box, score: Person(person, np.resize(np.asarray(xs, np.float32), (k, 3)), box, score),
    st.integers(0, 2**31), st.integers(1, 20), st.lists(finite, min_size=1, max_size=60),
    st.tuples(finite, finite, finite, finite), finite)
poses = st.builds(
    lambda stream, frame, found: PoseMessage(
        stream=stream, frame=frame, pts=frame / 25, t_capture=1.7e9, t_publish=1.7e9, size=(640, 480),
        joints="LSP14", people=tuple(found)),
    st.text(min_size=1, max_size=8), st.integers(0, 2**31), st.lists(people, max_size=3))
ints = st.integers(-(2**63), 2**64 - 1)  # what msgpack can hold
controls = st.builds(ControlMessage, st.text(min_size=1, max_size=8),
                     st.sampled_from(["start", "eos", "error", "stats"]),
                     st.dictionaries(st.text(max_size=5), ints | st.text(max_size=5), max_size=3))
messages = st.one_of(poses, controls)


def decodes_or_rejects(parts: list[bytes], max_bytes: int = 4096) -> Message | None:
    """The decoder's whole contract: a valid message, or WireError; never any other exception."""
    try:
        msg = decode(parts, max_bytes=max_bytes)
    except WireError:
        return None
    assert isinstance(msg, PoseMessage | ControlMessage)
    if isinstance(msg, PoseMessage):
        assert msg.frame >= 0 and all(math.isfinite(v) for v in (msg.pts, msg.t_capture))
        for p in msg.people:
            assert p.kp.dtype == np.float32 and p.kp.ndim == 2 and p.kp.shape[1] == 3 and p.id >= 0
            assert all(math.isfinite(v) for v in (p.score, *p.box))
    encode(msg)  # what was accepted can be passed on
    return msg


@FUZZ
@given(st.lists(st.binary(max_size=600), max_size=4))
def test_random_frames_decode_or_are_rejected(parts: list[bytes]) -> None:
    decodes_or_rejects(parts)


@FUZZ
@given(st.lists(st.binary(max_size=300) | st.sampled_from([b"pose/s0", b"ctl/s0", b"{}", b"\x80"]), max_size=3),
       st.dictionaries(st.sampled_from(["v", "stream", "frame", "pts", "kp", "size", "box", "score", "event",
                                        "joints", "t_capture", "t_publish", "people", "id"]),
                       st.none() | st.booleans() | ints | st.floats() | st.text(max_size=5)
                       | st.binary(max_size=40) | st.lists(ints | st.floats(), max_size=5)
                       | st.lists(st.dictionaries(st.sampled_from(["id", "kp", "box", "score"]),
                                                  ints | st.floats() | st.binary(max_size=24)
                                                  | st.lists(ints | st.floats(), max_size=4), max_size=4),
                                  max_size=2), max_size=14))
def test_random_maps_decode_or_are_rejected(topics: list[bytes], fields: dict[str, object]) -> None:
    payload = msgpack.packb(fields, use_bin_type=True)
    for topic in topics or [b"pose/s0"]:
        decodes_or_rejects([topic, payload])


@FUZZ
@given(messages, st.sampled_from(["msgpack", "json"]), st.data())
def test_mutated_messages_decode_or_are_rejected(msg: Message, fmt: str, data: st.DataObject) -> None:
    topic, payload = encode(msg, fmt)  # type: ignore[arg-type]
    # unmutated: accepted (three people of 20 joints in JSON can pass the mutations' 4 kB cap)
    assert decodes_or_rejects([topic, payload], max_bytes=len(payload)) is not None
    raw = bytearray(payload)
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "cut", "insert", "topic"]))
        at = data.draw(st.integers(0, max(len(raw) - 1, 0)))
        if op == "flip" and raw:
            raw[at] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "cut":
            del raw[at:]
        elif op == "insert":
            raw[at:at] = data.draw(st.binary(min_size=1, max_size=16))
        else:
            topic = data.draw(st.binary(max_size=12))
    decodes_or_rejects([topic, bytes(raw)])


def test_a_lone_surrogate_in_json_is_rejected() -> None:
    """Found by the fuzzer above: a bit flip in the JSON escape of a non-BMP character leaves a lone
    surrogate ("\\ud800"), which json.loads accepts but no UTF-8 encoder takes; the decoder refuses it."""
    good = b'{"v":1,"stream":"s0","event":"start","k\\ud800\\udc00":0}'
    assert decode([b"ctl/s0", good]).data == {"k\U00010000": 0}  # type: ignore[union-attr]
    bad = good.replace(b"\\udc00", b"x")  # "k\\ud800x": the low half flipped away
    with pytest.raises(WireError, match="not valid JSON"):
        decode([b"ctl/s0", bad])


def test_subscriber_survives_a_socket_full_of_hostile_messages() -> None:
    """A real PUB socket sends random and mutated messages, then a valid end: the real Subscriber skips the
    bad ones (counted), keeps every valid one and ends cleanly."""
    rng = np.random.default_rng(7)
    good = encode(ControlMessage("s0", "stats", {"n": 1}))
    hostile = [[rng.bytes(int(rng.integers(0, 200))) for _ in range(int(rng.integers(0, 4)))] for _ in range(300)]
    for _ in range(300):
        raw = bytearray(good[1])
        raw[int(rng.integers(0, len(raw)))] = int(rng.integers(0, 256))
        hostile.append([good[0], bytes(raw)])
    hostile.append([b"ctl/s0", b"\x00" * 6000])  # over the size cap: decoded no further
    hostile.append([b"ctl/s0", b"\x00" * 100_000])  # far over: libzmq drops the connection; it comes back
    ctx = zmq.Context.instance()
    pub = ctx.socket(zmq.PUB)
    port = pub.bind_to_random_port("tcp://127.0.0.1")
    try:
        with Subscriber(f"tcp://127.0.0.1:{port}", control=True, timeout=0.2, max_bytes=4096) as sub:
            for _ in range(200):  # slow joiner
                pub.send_multipart(good)
                if sub.recv(timeout=0.05) is not None:
                    break
            while sub.recv(timeout=0.1) is not None:
                pass
            for parts in hostile:
                if parts:  # ZeroMQ cannot send a message of no frames
                    pub.send_multipart(parts)
            got: list[Message] = []
            for _ in range(200):  # until the reconnected reader hears the end
                pub.send_multipart(encode(ControlMessage("s0", "eos")))
                got += list(sub)
                if got and got[-1] == ControlMessage("s0", "eos"):
                    break
    finally:
        pub.close(linger=0)
    print(f"{len(hostile)} hostile messages: {sub.rejected} rejected, {len(got)} accepted")
    assert got and got[-1] == ControlMessage("s0", "eos")
    assert sub.rejected >= 200


NUMERIC = {"run": ["--max-batch", "--hwm", "--max-wait-ms", "--max-frames", "--crop", "--people", "--redetect"],
           "listen": ["--count", "--timeout"]}


@settings(max_examples=300, deadline=None)
@given(option=st.sampled_from([(c, o) for c, opts in NUMERIC.items() for o in opts]),
       value=st.text(max_size=12) | st.sampled_from(["nan", "inf", "-inf", "1e400", "-1", "0", "2147483648", "1,2,3",
                                              "0x10", " 3", "1e-9", "-0", "9" * 30]))
def test_bad_option_values_are_usage_errors_or_valid(option: tuple[str, str], value: str) -> None:
    command, name = option
    argv = [command, "clip.mp4", f"{name}={value}"] if command == "run" else [command, f"{name}={value}"]
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            args = build_parser().parse_args(argv)
    except SystemExit as e:
        assert e.code == 2 and "error:" in err.getvalue()  # argparse's usage error
        return
    parsed = getattr(args, name[2:].replace("-", "_"))
    if isinstance(parsed, float):
        assert math.isfinite(parsed) and parsed >= 0
    elif isinstance(parsed, int):
        assert 0 <= parsed < 2**31 and (parsed >= 1 or name == "--max-frames")


def test_listen_timeout_is_honoured_for_tiny_values() -> None:
    """A parsed --timeout reaches a real poll: the smallest accepted values must not hang or raise."""
    with contextlib.closing(Subscriber("tcp://127.0.0.1:1", timeout=1e-9)) as sub:
        t = time.monotonic()
        assert list(sub) == []
        assert time.monotonic() - t < 1
