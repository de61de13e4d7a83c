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
import time
from collections import deque
from collections.abc import Iterator, Sequence

import zmq
from zmq.utils.monitor import recv_monitor_message

from streampose import curve
from streampose.endpoint import check_endpoint
from streampose.publish import DEFAULT_ENDPOINT
from streampose.wire import CTL_PREFIX, IMG_PREFIX, POSE_PREFIX, ControlMessage, Message, WireError, decode


class Subscriber:
    """Connects to a publisher and yields its messages.

    `streams`: stream ids to receive (all when None); `control`: also yield `ControlMessage`s
    (start, eos, error, stats); `timeout`: seconds without any message after which iteration ends
    (None: wait forever); `latest`: skip to the newest pose per stream; `max_bytes`: larger
    messages are rejected; `curve_keys`: a folder made by `streampose keys` (or a reader's
    `NAME.key_secret` in it) for a publisher that encrypts and admits only known readers
    (see `streampose.curve`); `previews`: also yield the `PreviewMessage` JPEGs of a run with `--preview`."""

    def __init__(self, endpoint: str = DEFAULT_ENDPOINT, streams: Sequence[str] | None = None,
                 control: bool = False, timeout: float | None = None, latest: bool = False,
                 max_bytes: int = 1 << 20, context: zmq.Context[zmq.Socket[bytes]] | None = None,
                 curve_keys: str | os.PathLike[str] | None = None, previews: bool = False) -> None:
        check_endpoint(endpoint, bind=False)
        self.endpoint, self.timeout, self.latest, self.max_bytes = endpoint, timeout, latest, max_bytes
        self.streams = frozenset(streams) if streams is not None else None
        self.control, self.previews = control, previews
        self.rejected = 0
        """Messages dropped as malformed, oversized or of an unknown version."""
        self.last_error: str | None = None
        self._pending: deque[Message] = deque()
        self._context = context or zmq.Context.instance()
        self._curve_keys = curve_keys
        self._connect()

    def _connect(self) -> None:
        """A fresh SUB socket, connected. A monitor reports when the connection drops: libzmq ends a
        connection whose peer sent more than MAXMSGSIZE and never reconnects it, so the reader reconnects
        itself (with a new socket: reusing the old one can abort libzmq mid-message) and one oversized
        message cannot deafen it for good."""
        self._socket = self._context.socket(zmq.SUB)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.MAXMSGSIZE, self.max_bytes + 4096)  # libzmq drops the peer beyond this
        prefixes = [POSE_PREFIX] + ([CTL_PREFIX] if self.control else []) + ([IMG_PREFIX] if self.previews else [])
        for prefix in prefixes:
            for stream in sorted(self.streams) if self.streams is not None else [""]:
                self._socket.setsockopt(zmq.SUBSCRIBE, (prefix + stream).encode())
        self._monitor = self._socket.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        self._poller = zmq.Poller()
        self._poller.register(self._socket, zmq.POLLIN)
        self._poller.register(self._monitor, zmq.POLLIN)
        try:
            if self._curve_keys is not None:
                curve.connect(self._socket, self._curve_keys)
            self._socket.connect(self.endpoint)
        except curve.CurveError:
            self.close()
            raise
        except zmq.ZMQError as e:
            self.close()
            raise ValueError(f"cannot connect to {self.endpoint}: {e.strerror}; "
                             "use an endpoint like tcp://127.0.0.1:5555") from None

    def recv(self, timeout: float | None = None) -> Message | None:
        """The next message, or None if none arrives within `timeout` seconds (None: wait forever)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._pending:
            wait = None if deadline is None else max(0, int((deadline - time.monotonic()) * 1000))
            ready = dict(self._poller.poll(wait))
            if self._monitor in ready:
                self._reconnect_if_dropped()
            if self._socket in ready:
                self._receive_waiting()
            elif not ready:
                return None
        return self._pending.popleft()

    def _reconnect_if_dropped(self) -> None:
        dropped = False
        while self._monitor.poll(0):
            dropped |= recv_monitor_message(self._monitor)["event"] == zmq.EVENT_DISCONNECTED
        if dropped:
            self._receive_waiting(everything=True)  # what arrived before the drop is still good
            self.close()
            self._connect()

    def _receive_waiting(self, everything: bool = False) -> None:
        """Move the waiting messages (all of them with `latest` or `everything`, else one) into the pending queue."""
        got: list[Message] = []
        while True:
            try:
                parts = self._socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            msg = self._accept(parts)
            if msg is not None:
                got.append(msg)
            if not (self.latest or everything):
                break
        if self.latest:  # keep control messages and each stream's newest pose and preview, in arrival order
            newest = {m.topic: i for i, m in enumerate(got) if not isinstance(m, ControlMessage)}
            got = [m for i, m in enumerate(got) if isinstance(m, ControlMessage) or newest[m.topic] == i]
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
        """Safe to call twice."""
        if not self._socket.closed:
            self._socket.disable_monitor()
            self._monitor.close()
            self._socket.close()

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
