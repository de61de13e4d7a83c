"""The publishing side of the keypoint stream: a ZeroMQ PUB socket speaking the wire format.

PUB never blocks: a subscriber that falls `hwm` messages behind is muted (its messages are
dropped) until it catches up, so a slow or vanished reader cannot stall or bloat the pipeline.
Binds to loopback by default; binding to all interfaces is allowed but warned about. With `connect`, it
connects to a `streampose proxy` instead (`streampose.proxy`), which many publishers share.
"""

from __future__ import annotations

import os
import re
import sys

import zmq
from zmq.auth.thread import ThreadAuthenticator

from streampose import curve
from streampose.endpoint import EndpointError, check_endpoint
from streampose.wire import FORMATS, Format, Message, encode

DEFAULT_ENDPOINT = "tcp://127.0.0.1:5555"
LINGER_MS = 500
"""How long `close` waits to flush queued messages (the final end-of-stream) to connected readers."""
CONNECT_WAIT_S = 5.0
"""How long a publisher connecting to a proxy waits for it to answer before sending anyway."""


class PublishError(OSError):
    """The endpoint cannot be bound; the message says which and what to do."""


def binds_all_interfaces(endpoint: str) -> bool:
    """True for tcp endpoints reachable from other machines by default: `*`, 0.0.0.0 or [::]."""
    m = re.match(r"tcp://(\[[^\]]*\]|[^:]*):", endpoint)
    return bool(m) and m.group(1) in ("*", "0.0.0.0", "[::]", "::")  # type: ignore[union-attr]


class Publisher:
    """Publishes messages on `endpoint` (bound here). `hwm` is the number of messages queued per
    subscriber before its messages are dropped. Use as a context manager, or call `close`.

    >>> with Publisher("tcp://127.0.0.1:*") as pub:   # any free port; pub.endpoint says which
    ...     pub.send(message)
    """

    def __init__(self, endpoint: str = DEFAULT_ENDPOINT, fmt: Format = "msgpack", hwm: int = 100,
                 context: zmq.Context[zmq.Socket[bytes]] | None = None,
                 curve_keys: str | os.PathLike[str] | None = None, connect: bool = False,
                 connect_wait: float = CONNECT_WAIT_S) -> None:
        """`curve_keys`: a folder made by `streampose keys`; messages are then encrypted and only the
        readers whose public keys are in its `authorized/` get them (see `streampose.curve`). `connect`: connect
        to a `streampose proxy` at `endpoint` instead of binding it (with `curve_keys`, as a reader of the keys
        connects: its keypair and server.key); up to `connect_wait` seconds are spent waiting for the proxy to
        answer, since what is sent before it does is lost (a warning says so when it does not)."""
        if fmt not in FORMATS:
            raise ValueError(f"unknown wire format {fmt!r}; choose from {', '.join(FORMATS)}")
        if hwm < 1:
            raise ValueError(f"hwm must be at least 1, got {hwm}")
        try:
            check_endpoint(endpoint, bind=not connect)
        except EndpointError as e:
            raise PublishError(f"cannot publish {'to' if connect else 'on'} {endpoint}: {e}") from None
        self.fmt: Format = fmt
        self.sent = 0
        # a context of its own (unless given one), so that `close` can wait for the queue to drain: the process
        # may leave with os._exit right after (cli.entry), taking unsent messages with it; the CURVE
        # authenticator also serves a whole context
        self._own_context: zmq.Context[zmq.Socket[bytes]] | None = None
        if context is None:
            context = self._own_context = zmq.Context()
        # connected to a proxy, an XPUB: the proxy's subscription is how we know it is listening
        kind = zmq.XPUB if connect else zmq.PUB
        self._socket = context.socket(kind)
        self._socket.setsockopt(zmq.SNDHWM, hwm)
        self._socket.setsockopt(zmq.LINGER, LINGER_MS)
        self._auth: ThreadAuthenticator | None = None
        try:
            if connect:
                if curve_keys is not None:
                    curve.connect(self._socket, curve_keys)
                self._socket.connect(endpoint)
            else:
                if curve_keys is not None:
                    self._auth = curve.serve(self._socket, curve_keys)
                self._socket.bind(endpoint)
        except (zmq.ZMQError, curve.CurveError) as e:
            self._close(linger=0)
            if isinstance(e, curve.CurveError):
                raise
            hint = ("another program (or `streampose run`) is using it: pick another port, e.g. "
                    "--publish tcp://127.0.0.1:5556" if e.errno == zmq.EADDRINUSE
                    else "use an endpoint like tcp://127.0.0.1:5555 or ipc:///tmp/streampose")
            raise PublishError(f"cannot publish on {endpoint}: {e.strerror}; {hint}") from None
        self.endpoint: str = endpoint if connect else self._socket.getsockopt_string(zmq.LAST_ENDPOINT)
        """The bound endpoint with the actual port (`tcp://127.0.0.1:*` resolves to a free one), or the proxy's."""
        if connect:
            if not self._socket.poll(int(connect_wait * 1000)):
                print(f"streampose: warning: no proxy answered at {endpoint} within {connect_wait:g} s; poses are "
                      "dropped until one does (is `streampose proxy` running there, with these --curve-keys?)",
                      file=sys.stderr)
        elif binds_all_interfaces(endpoint) and curve_keys is None:
            print(f"streampose: warning: publishing on {self.endpoint} is reachable from other machines, "
                  "unencrypted; bind tcp://127.0.0.1:PORT to keep poses on this one, or add --curve-keys DIR "
                  "(streampose keys DIR) to encrypt and admit only known readers", file=sys.stderr)

    def send(self, msg: Message) -> None:
        """Queue a message for every subscriber; never blocks."""
        self._socket.send_multipart(encode(msg, self.fmt), flags=zmq.NOBLOCK)
        self.sent += 1

    def close(self) -> None:
        """Flush for up to LINGER_MS, then release the port: what was sent is out when this returns (or its
        readers were too slow). Safe to call twice."""
        self._close(linger=None)

    def _close(self, linger: int | None) -> None:
        if not self._socket.closed:
            self._socket.close(linger=linger)
        if self._auth is not None:
            self._auth.stop()
            self._auth = None
        if self._own_context is not None:
            self._own_context.term()
            self._own_context = None

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
