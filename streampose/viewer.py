"""`streampose view`: a web page that shows a running keypoint stream, served with aiohttp.

One thread reads the stream (`Subscriber`: poses, control messages and `--preview` JPEGs, newest only) and hands
each message to the server's event loop, where `Hub` keeps the newest of everything per stream, already encoded
for the page. Each browser has a WebSocket and one coroutine that sends what changed since its last send: a slow
browser waits on its own socket, gets the newest data when it is ready and skips the rest, and neither the other
browsers nor the run notice. The page (`streampose/web/`: plain JavaScript, no build step, nothing fetched from
elsewhere) draws each stream's preview and skeleton on a canvas.

Safe by default: it binds loopback. Bound wider, every request needs the token printed with the URL (as in
Jupyter), answered with HTTP 403 otherwise; the page puts stream data into text nodes and canvas pixels only.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import math
import os
import secrets
import struct
import sys
import threading
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

from aiohttp import WSMsgType, web

from streampose.draw import PEOPLE_COLORS
from streampose.endpoint import VIEW_HOST, VIEW_PORT
from streampose.joints import BGR, JOINT_SETS
from streampose.subscriber import Subscriber
from streampose.wire import ControlMessage, Message, PoseMessage, PreviewMessage

COOKIE = "streampose_token"
STATIC = {"/": ("index.html", "text/html"), "/viewer.js": ("viewer.js", "text/javascript"),
          "/viewer.css": ("viewer.css", "text/css"), "/favicon.svg": ("favicon.svg", "image/svg+xml")}
HEADERS = {
    "Content-Security-Policy": ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
                                "connect-src 'self' ws: wss:; base-uri 'none'; form-action 'none'; "
                                "frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
STATES = {"start": "running", "eos": "ended", "error": "error"}


class ViewerError(OSError):
    """The page cannot be served (port taken, bad host); the message says what to do."""


def is_loopback(host: str) -> bool:
    """True for names and addresses only this machine reaches."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _css(bgr: BGR) -> str:
    return f"rgb({bgr[2]},{bgr[1]},{bgr[0]})"


def skeletons() -> dict[str, Any]:
    """The joint sets as the page draws them: names, edges and colours (the same as `streampose.draw`)."""
    return {"joint_sets": {name: {"names": list(js.names), "edges": [list(e) for e in js.edges],
                                  "edge_colors": [_css(c) for c in js.edge_colors],
                                  "joint_colors": [_css(c) for c in js.joint_colors]}
                           for name, js in JOINT_SETS.items()},
            "people_colors": [_css(c) for c in PEOPLE_COLORS]}


def _finite(x: Any) -> Any:
    return x if isinstance(x, int | float) and math.isfinite(x) and not isinstance(x, bool) else None


def pose_json(msg: PoseMessage) -> str:
    """A pose message as the page reads it (non-finite numbers as null: JSON has no NaN)."""
    people = [{"id": p.id, "score": _finite(float(p.score)), "box": [_finite(float(v)) for v in p.box],
               "kp": [[_finite(float(v)) for v in row] for row in p.kp]} for p in msg.people]
    return json.dumps({"kind": "pose", "stream": msg.stream, "frame": msg.frame, "t_capture": msg.t_capture,
                       "size": list(msg.size), "joints": msg.joints, "people": people})


def preview_frame(msg: PreviewMessage) -> bytes:
    """A preview as one binary WebSocket message: a 4-byte big-endian header length, the JSON header, the JPEG."""
    head = json.dumps({"kind": "preview", "stream": msg.stream, "frame": msg.frame, "size": list(msg.size)}).encode()
    return struct.pack(">I", len(head)) + head + msg.jpeg


class Hub:
    """The newest pose, preview and status of every stream, each encoded once for every browser, with a version
    that moves on at each change. Runs on the server's event loop only."""

    def __init__(self) -> None:
        self.version = 0
        self.items: dict[tuple[str, str], tuple[int, str | bytes]] = {}
        """(stream, kind) -> (version, payload) for kind pose, preview and status."""
        self.status: dict[str, dict[str, Any]] = {}
        self._changed = asyncio.Event()

    def feed(self, msg: Message) -> None:
        if isinstance(msg, PoseMessage):
            self._put(msg.stream, "pose", pose_json(msg))
            if self.status.get(msg.stream, {}).get("state") != "running":
                self._status(msg.stream, state="running")
        elif isinstance(msg, PreviewMessage):
            self._put(msg.stream, "preview", preview_frame(msg))
        elif msg.event == "stats":
            self._status(msg.stream, state="running", fps=_finite(msg.data.get("fps")),
                         frames=_finite(msg.data.get("frames")), dropped=_finite(msg.data.get("dropped")))
        else:
            self._event(msg)

    def _event(self, msg: ControlMessage) -> None:
        state = "retrying" if msg.event == "error" and msg.data.get("retrying") else STATES.get(msg.event)
        if state is None:
            return
        fields: dict[str, Any] = {"state": state}
        if msg.event == "start":
            fields.update(source=str(msg.data.get("source", "")), live=bool(msg.data.get("live")), fps=None)
        if msg.event == "eos" and msg.data.get("interrupted"):
            fields["state"] = "stopped"
        if "message" in msg.data:
            fields["message"] = str(msg.data["message"])
        self._status(msg.stream, **fields)

    def _status(self, stream: str, **fields: Any) -> None:
        st = self.status.setdefault(stream, {"kind": "status", "stream": stream, "state": "running"})
        if fields.get("state") == "running" and st["state"] != "running":
            st.pop("message", None)
        st.update(fields)
        self._put(stream, "status", json.dumps(st))

    def _put(self, stream: str, kind: str, payload: str | bytes) -> None:
        self.version += 1
        self.items[(stream, kind)] = (self.version, payload)
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def changes(self, seen: int) -> int:
        """Wait until the version passes `seen`; the new version."""
        while self.version == seen:
            await self._changed.wait()
        return self.version


class Viewer:
    """Serves the page for the stream at `endpoint` on http://HOST:PORT/, in a thread of its own; `url` is what
    to open (with the token where one is needed). Use as a context manager, or call `close`.

    >>> with Viewer("tcp://127.0.0.1:5555") as v:
    ...     print(v.url)
    """

    def __init__(self, endpoint: str, host: str = VIEW_HOST, port: int = VIEW_PORT,
                 curve_keys: str | os.PathLike[str] | None = None, token: str | None = None) -> None:
        """`port` 0 takes a free port. A host other than loopback needs a token: `token`, or a random one;
        loopback needs none unless `token` is given."""
        self.endpoint, self.host = endpoint, host
        self.token = token if token is not None or is_loopback(host) else secrets.token_urlsafe(24)
        self._sub = Subscriber(endpoint, control=True, previews=True, latest=True, curve_keys=curve_keys)
        self._stop = threading.Event()
        self._loop = asyncio.new_event_loop()
        self.hub: Hub | None = None
        self.clients = 0
        self._sockets: set[web.WebSocketResponse] = set()
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.port = port
        self._server = threading.Thread(target=self._serve, name="streampose-viewer", daemon=True)
        self._reader = threading.Thread(target=self._read, name="streampose-viewer-reader", daemon=True)
        self._server.start()
        self._ready.wait()
        if self._error is not None:
            self._sub.close()
            raise self._error
        self._reader.start()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/" + (f"?token={self.token}" if self.token else "")

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._start())
        except OSError as e:
            self._error = ViewerError(f"cannot serve the viewer on {self.host}:{self.port}: {e.strerror or e}; "
                                      "pick another port with --port, e.g. --port 8766")
        except BaseException as e:  # handed to the caller's thread
            self._error = e
        self._ready.set()
        if self._error is None:
            self._loop.run_forever()
            self._loop.run_until_complete(self._cleanup())
        self._loop.close()

    async def _start(self) -> None:
        self.hub = Hub()
        app = web.Application(middlewares=[self._guard])
        for path in STATIC:
            app.router.add_get(path, self._static)
        app.router.add_get("/skeletons.json", self._skeletons)
        app.router.add_get("/ws", self._ws)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        if self.port == 0:  # the bound socket says which port it took
            self.port = int(self._runner.addresses[0][1])

    async def _cleanup(self) -> None:
        """Say goodbye to every page (1001: going away; it reconnects to the next viewer), then stop serving."""
        for ws in list(self._sockets):
            await ws.close(code=1001, message=b"streampose view stopped")
        if self._runner is not None:
            await self._runner.cleanup()

    @web.middleware
    async def _guard(self, request: web.Request,
                     handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        """The token (query or cookie) where one is set; security headers on every answer."""
        given = request.query.get("token") or request.cookies.get(COOKIE) or ""
        if self.token and not secrets.compare_digest(given.encode(), self.token.encode()):
            raise web.HTTPForbidden(text="streampose view: this page needs the token printed with its URL "
                                         "(?token=...)\n")
        response = await handler(request)
        if not isinstance(response, web.WebSocketResponse):
            response.headers.update(HEADERS)
            if self.token:
                response.set_cookie(COOKIE, self.token, httponly=True, samesite="Strict")
        return response

    async def _static(self, request: web.Request) -> web.Response:
        name, kind = STATIC[request.path]
        body = resources.files("streampose").joinpath("web").joinpath(name).read_bytes()
        return web.Response(body=body, content_type=kind, charset="utf-8")

    async def _skeletons(self, request: web.Request) -> web.Response:
        return web.json_response(skeletons())

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=20)
        await ws.prepare(request)
        assert self.hub is not None
        hub, seen = self.hub, -1
        sent: dict[tuple[str, str], int] = {}
        self.clients += 1
        self._sockets.add(ws)
        reader = asyncio.ensure_future(self._drain(ws))
        try:
            while not ws.closed and not reader.done():
                waiter = asyncio.ensure_future(hub.changes(seen))
                await asyncio.wait([waiter, reader], return_when=asyncio.FIRST_COMPLETED)
                if not waiter.done():
                    waiter.cancel()
                    break
                seen = waiter.result()
                # in the order they changed: a stream's last pose before the status that says it ended
                fresh = sorted((v, key) for key, (v, _) in hub.items.items() if sent.get(key, 0) < v)
                for version, key in fresh:
                    sent[key] = version
                    now, payload = hub.items[key]
                    if now == version:  # else replaced while the ones before were sent: the newer goes next turn
                        await (ws.send_bytes(payload) if isinstance(payload, bytes) else ws.send_str(payload))
        except (ConnectionError, RuntimeError):
            pass  # the browser went away mid-send
        finally:
            self.clients -= 1
            self._sockets.discard(ws)
            reader.cancel()
            await ws.close()
        return ws

    @staticmethod
    async def _drain(ws: web.WebSocketResponse) -> None:
        """Read (and ignore) what the page sends, until it closes."""
        async for msg in ws:
            if msg.type == WSMsgType.ERROR:
                break

    def _read(self) -> None:
        while not self._stop.is_set():
            msg = self._sub.recv(timeout=0.2)
            if msg is not None and self.hub is not None:
                self._loop.call_soon_threadsafe(self.hub.feed, msg)

    def wait(self) -> None:
        """Serve until Ctrl-C."""
        self._stop.wait()

    def close(self) -> None:
        """Stop serving and reading; safe to call twice."""
        if self._stop.is_set():
            return
        self._stop.set()
        if self._reader.is_alive():
            self._reader.join()
        self._sub.close()
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._server.join()

    def __enter__(self) -> Viewer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def announce(viewer: Viewer) -> None:
    """Print where the page is, and warn when others can reach it."""
    if not is_loopback(viewer.host):
        print(f"streampose view: warning: serving on {viewer.host}, reachable from other machines; the page "
              "needs the token in this URL. Keep it secret, or serve on 127.0.0.1 and tunnel (ssh -L)",
              file=sys.stderr)
    print(f"streampose view: {viewer.url}  (stream {viewer.endpoint}; Ctrl-C stops)", file=sys.stderr, flush=True)
