"""`streampose proxy`: one endpoint that many runs publish into and many readers read, ZeroMQ's own proxy.

    streampose proxy --frontend tcp://127.0.0.1:5556 --backend tcp://127.0.0.1:5557
    streampose run cam1.mp4 --name cam1 --publish tcp://127.0.0.1:5556 --connect     # any number of these
    streampose listen tcp://127.0.0.1:5557                                           # and of these

The frontend is an XSUB socket that publishers connect to, the backend an XPUB socket that readers connect to;
`zmq.proxy_steerable` moves messages between them in libzmq's own thread, untouched (no decoding: the wire
format passes through as it is). The frontend subscribes to everything, so publishers send at once, whether
or not a reader is there yet. With `curve_keys`, both sides are CURVE servers with the folder's server key and
admit only the public keys in its `authorized/` (the runs' and the readers' keypairs, `streampose keys DIR
--name cam1`); a peer without an admitted key gets nothing and can send nothing.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

import zmq
from zmq.auth.thread import ThreadAuthenticator

from streampose import curve
from streampose.endpoint import EndpointError, check_endpoint
from streampose.publish import binds_all_interfaces

FRONTEND = "tcp://127.0.0.1:5556"
BACKEND = "tcp://127.0.0.1:5557"
HWM = 10000
"""Messages queued per peer in the proxy before it drops for that peer (a slow reader does not hold up others)."""


class ProxyError(OSError):
    """An endpoint the proxy cannot bind; one line naming it."""


class Proxy:
    """Binds `frontend` (publishers connect) and `backend` (readers connect) and forwards in a thread once
    started. Use as a context manager, or `start` and `close`; `forwarded` counts the messages passed on."""

    def __init__(self, frontend: str = FRONTEND, backend: str = BACKEND,
                 curve_keys: str | os.PathLike[str] | None = None, hwm: int = HWM) -> None:
        for side, endpoint in (("--frontend", frontend), ("--backend", backend)):
            try:
                check_endpoint(endpoint, bind=True)
            except EndpointError as e:
                raise ProxyError(f"{side}: {e}") from None
        self._context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()  # its own: the authenticator serves it all
        self._front = self._context.socket(zmq.XSUB)
        self._back = self._context.socket(zmq.XPUB)
        self._control = self._context.socket(zmq.PAIR)
        self._steer = self._context.socket(zmq.PAIR)
        self._auth: ThreadAuthenticator | None = None
        self._thread: threading.Thread | None = None
        self._done = threading.Event()
        self._forwarded = 0
        for s in (self._front, self._back):
            s.setsockopt(zmq.RCVHWM, hwm)
            s.setsockopt(zmq.SNDHWM, hwm)
            s.setsockopt(zmq.LINGER, 0)
        try:
            if curve_keys is not None:
                self._auth = curve.serve([self._front, self._back], curve_keys)
            for side, s, endpoint in (("--frontend", self._front, frontend), ("--backend", self._back, backend)):
                try:
                    s.bind(endpoint)
                except zmq.ZMQError as e:
                    raise ProxyError(f"{side}: cannot bind {endpoint}: {e.strerror}"
                                     + ("; another program uses it: pick another port" if e.errno == zmq.EADDRINUSE
                                        else "")) from None
        except BaseException:
            self.close()
            raise
        self.frontend: str = self._front.getsockopt_string(zmq.LAST_ENDPOINT)
        self.backend: str = self._back.getsockopt_string(zmq.LAST_ENDPOINT)
        self._front.send(b"\x01")  # subscribe upstream to every topic
        address = f"inproc://streampose-proxy-{id(self)}"
        self._control.bind(address)
        self._steer.connect(address)
        for side, endpoint in (("frontend", frontend), ("backend", backend)):
            if binds_all_interfaces(endpoint) and curve_keys is None:
                print(f"streampose proxy: warning: the {side} {endpoint} is reachable from other machines, "
                      "unencrypted; add --curve-keys DIR to encrypt and admit only known peers", file=sys.stderr)

    def start(self) -> Proxy:
        """Forward in a background thread until `close`."""
        self._thread = threading.Thread(target=self._forward, name="streampose-proxy", daemon=True)
        self._thread.start()
        return self

    def _forward(self) -> None:
        # signals are the main thread's: one landing here would interrupt libzmq's proxy, which then restarts
        # with its counters at zero
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            zmq.proxy_steerable(self._front, self._back, None, self._control)
        finally:
            self._done.set()

    @property
    def running(self) -> bool:
        # not Thread.is_alive: a join interrupted by Ctrl-C leaves it saying False (CPython gh-90882)
        return self._thread is not None and not self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Until the proxy stops (it stops on `close`); False when `timeout` passed first."""
        return self._thread is None or self._done.wait(timeout)

    @property
    def forwarded(self) -> int:
        """Messages received from publishers so far (each of the wire format's two parts)."""
        if not self.running:
            return self._forwarded
        self._steer.send(b"STATISTICS")
        stats = [int.from_bytes(p, sys.byteorder) for p in self._steer.recv_multipart()]
        self._forwarded = stats[0] // 2  # the frontend's message parts received; a message is a topic and a map
        return self._forwarded

    def close(self) -> None:
        """Stop forwarding and release both ports. Safe to call twice."""
        if self.running:
            _ = self.forwarded
            self._steer.send(b"TERMINATE")
            self._done.wait()
        for s in (self._front, self._back, self._control, self._steer):
            if not s.closed:
                s.close(linger=0)
        if self._auth is not None:
            self._auth.stop()
            self._auth = None
        if not self._context.closed:
            self._context.term()

    def __enter__(self) -> Proxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def add_parser(sub: Any, bind_endpoint: Callable[[str], str]) -> None:
    """`streampose proxy`, on the `streampose` command's subparsers (its endpoint check shared)."""
    p = sub.add_parser(
        "proxy", help="one endpoint for many runs and many readers: ZeroMQ's XSUB/XPUB proxy",
        description="Forward every message that runs publish into --frontend (`streampose run --publish ENDPOINT "
                    "--connect`) to every reader of --backend (`streampose listen`, `view`, `Subscriber`), "
                    "unchanged. Give each run its own stream ids (`run --name`). Binds loopback by default; "
                    "Ctrl-C stops it.",
        epilog="example:\n  streampose proxy &\n"
               "  streampose run a.mp4 --name a --publish tcp://127.0.0.1:5556 --connect &\n"
               "  streampose run b.mp4 --name b --publish tcp://127.0.0.1:5556 --connect &\n"
               "  streampose listen tcp://127.0.0.1:5557",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frontend", default=FRONTEND, type=bind_endpoint,
                   help="where runs connect to publish (default: %(default)s)")
    p.add_argument("--backend", default=BACKEND, type=bind_endpoint,
                   help="where readers connect (default: %(default)s)")
    p.add_argument("--curve-keys", metavar="DIR",
                   help="encrypt both sides with ZeroMQ CURVE and admit only the runs and readers whose public keys "
                        "are in DIR/authorized (make them with `streampose keys DIR --name NAME`)")
    p.add_argument("--hwm", type=int, default=HWM, help="messages queued per peer (default: %(default)s)")
    p.set_defaults(func=cmd_proxy)


def cmd_proxy(args: argparse.Namespace) -> int:
    from streampose.cli import Terminated

    with Proxy(args.frontend, args.backend, curve_keys=args.curve_keys, hwm=args.hwm) as proxy:
        print(f"streampose proxy: runs publish to {proxy.frontend} (--connect), readers read {proxy.backend}; "
              "Ctrl-C stops it", file=sys.stderr, flush=True)
        try:
            while not proxy.wait(0.5):
                pass
        except Terminated:
            raise
        except KeyboardInterrupt:  # how a proxy is stopped, not a failure (SIGTERM still is one: 143)
            print(f"streampose proxy: stopped after forwarding {proxy.forwarded} messages", file=sys.stderr)
    return 0
