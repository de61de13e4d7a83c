"""The reading side of the keypoint stream: decoded poses from a running `streampose run`.

    from streampose import Subscriber
    with Subscriber("tcp://127.0.0.1:5555", timeout=5) as sub:
        for msg in sub:                       # PoseMessage: msg.kp is a (K, 3) float32 array
            print(msg.stream, msg.frame, msg.kp[:, 2].mean())

Every message is validated (`streampose.wire.decode`) and capped in size; malformed ones are
counted in `rejected` and skipped, never raised into the caller's loop. `latest=True` hands out
only the newest pose of each stream (for consumers slower than the stream), keeping every control
message. Subscribers miss what was published before they connected (ZeroMQ's "slow joiner");
keypoint streams are open-ended, so a reader simply starts from where it joins.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator, Sequence

import zmq

from streampose import curve
from streampose.publish import DEFAULT_ENDPOINT
from streampose.wire import CTL_PREFIX, POSE_PREFIX, ControlMessage, Message, PoseMessage, WireError, decode


class Subscriber:
    """Connects to a publisher and yields its messages.

    `streams`: stream ids to receive (all when None); `control`: also yield `ControlMessage`s
    (start, eos, error, stats); `timeout`: seconds without any message after which iteration ends
    (None: wait forever); `latest`: skip to the newest pose per stream; `max_bytes`: larger
    messages are rejected; `curve_keys`: a folder made by `streampose keys` for a publisher that
    encrypts and admits only known readers (see `streampose.curve`)."""

    def __init__(self, endpoint: str = DEFAULT_ENDPOINT, streams: Sequence[str] | None = None,
                 control: bool = False, timeout: float | None = None, latest: bool = False,
                 max_bytes: int = 1 << 20, context: zmq.Context[zmq.Socket[bytes]] | None = None,
                 curve_keys: str | os.PathLike[str] | None = None) -> None:
        self.endpoint, self.timeout, self.latest, self.max_bytes = endpoint, timeout, latest, max_bytes
        self.streams = frozenset(streams) if streams is not None else None
        self.control = control
        self.rejected = 0
        """Messages dropped as malformed, oversized or of an unknown version."""
        self.last_error: str | None = None
        self._pending: deque[Message] = deque()
        self._socket = (context or zmq.Context.instance()).socket(zmq.SUB)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.MAXMSGSIZE, max_bytes + 4096)  # libzmq drops the peer beyond this
        prefixes = [POSE_PREFIX] + ([CTL_PREFIX] if control else [])
        for prefix in prefixes:
            for stream in sorted(self.streams) if self.streams is not None else [""]:
                self._socket.setsockopt(zmq.SUBSCRIBE, (prefix + stream).encode())
        try:
            if curve_keys is not None:
                curve.connect(self._socket, curve_keys)
            self._socket.connect(endpoint)
        except curve.CurveError:
            self._socket.close()
            raise
        except zmq.ZMQError as e:
            self._socket.close()
            raise ValueError(f"cannot connect to {endpoint}: {e.strerror}; "
                             "use an endpoint like tcp://127.0.0.1:5555") from None

    def recv(self, timeout: float | None = None) -> Message | None:
        """The next message, or None if none arrives within `timeout` seconds (None: wait forever)."""
        while not self._pending:
            if not self._socket.poll(None if timeout is None else int(timeout * 1000)):
                return None
            self._receive_waiting()
        return self._pending.popleft()

    def _receive_waiting(self) -> None:
        """Move the waiting messages (all of them with `latest`, else one) into the pending queue."""
        got: list[Message] = []
        while True:
            try:
                parts = self._socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            msg = self._accept(parts)
            if msg is not None:
                got.append(msg)
            if not self.latest:
                break
        if self.latest:  # keep control messages and each stream's newest pose, in arrival order
            newest = {m.stream: i for i, m in enumerate(got) if isinstance(m, PoseMessage)}
            got = [m for i, m in enumerate(got) if isinstance(m, ControlMessage) or newest[m.stream] == i]
        self._pending.extend(got)

    def _accept(self, parts: list[bytes]) -> Message | None:
        try:
            msg = decode(parts, max_bytes=self.max_bytes)
        except WireError as e:
            self.rejected += 1
            self.last_error = str(e)
            return None
        if self.streams is not None and msg.stream not in self.streams:
            return None  # a longer id that shares the subscribed prefix (s1 vs s10)
        return msg

    def __iter__(self) -> Iterator[Message]:
        """Messages until `timeout` seconds pass without one (forever if timeout is None)."""
        while (msg := self.recv(self.timeout)) is not None:
            yield msg

    def close(self) -> None:
        self._socket.close()

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
