"""`streampose view` and `run --preview`: previews on the wire, the page in a real headless Chromium while real runs
publish real clips, the token when bound wide, and a slow browser that must not hold anyone back."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from conftest import EXE, cut, free_endpoint, interruptible

from streampose.preview import PreviewEncoder, preview_jpeg
from streampose.sources import Frame
from streampose.viewer import Hub, Viewer, is_loopback, skeletons
from streampose.wire import ControlMessage, PoseMessage, PreviewMessage, WireError, decode, encode

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
NEEDS_BROWSER = "needs Debian's chromium and chromium-driver: apt-get install chromium chromium-driver"


# --- previews on the wire ---------------------------------------------------------------------------------
def test_previews_are_small_jpegs_on_their_own_topic_in_both_formats() -> None:
    image = np.zeros((720, 1280, 3), np.uint8)
    image[100:300, 200:400] = (0, 0, 255)
    jpeg = preview_jpeg(image)
    small = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert small.shape == (360, 640, 3) and small[100, 150, 2] > 200  # downscaled, the red square where it was
    msg = PreviewMessage("cam", 7, 0.25, 1.5, (1280, 720), jpeg)
    for fmt in ("msgpack", "json"):
        parts = encode(msg, fmt)
        assert parts[0] == b"img/cam"
        assert decode(parts) == msg
    with pytest.raises(WireError, match="JPEG"):
        decode([b"img/cam", encode(PreviewMessage("cam", 7, 0.0, 0.0, (2, 2), b"GIF89a"))[1]])


def test_the_encoder_takes_at_most_fps_frames_and_hands_back_the_newest() -> None:
    frames = [Frame(np.full((480, 640, 3), i, np.uint8), i, i / 30) for i in range(60)]
    with PreviewEncoder(fps=5) as enc:
        t0 = time.monotonic()
        for f in frames:  # two seconds of a 30 fps stream
            enc.offer("s0", f)
            time.sleep(1 / 30)
        time.sleep(0.3)
        got = enc.take()
        elapsed = time.monotonic() - t0
        assert len(got) == 1 and got[0].stream == "s0"  # the newest ready, not a backlog
        assert 1 <= enc.encoded <= 5 * elapsed + 1
        assert enc.take() == []


# --- the page's data --------------------------------------------------------------------------------------
def test_hub_keeps_the_newest_of_each_stream_and_its_state() -> None:
    async def go() -> None:
        hub = Hub()
        seen = hub.version
        waiter = asyncio.ensure_future(hub.changes(seen))
        await asyncio.sleep(0)
        assert not waiter.done()
        hub.feed(ControlMessage("s0", "start", {"source": "<b>x</b>", "live": True}))
        assert await waiter > seen
        for frame in range(3):
            hub.feed(PoseMessage("s0", frame, frame / 30, 0.0, 0.0, (640, 480), "LSP14"))
        assert '"frame": 2' in str(hub.items[("s0", "pose")][1])
        hub.feed(ControlMessage("s0", "stats", {"fps": float("nan"), "frames": 3}))
        assert hub.status["s0"]["fps"] is None  # JSON has no NaN
        hub.feed(ControlMessage("s0", "error", {"message": "lost", "retrying": True}))
        assert hub.status["s0"]["state"] == "retrying"
        hub.feed(ControlMessage("s0", "eos", {}))
        assert hub.status["s0"]["state"] == "ended"
        hub.feed(ControlMessage("s0", "start", {"source": "again"}))
        assert hub.status["s0"]["state"] == "running"

    asyncio.run(go())


def test_skeletons_are_the_joint_sets_with_their_drawing_colours() -> None:
    s = skeletons()
    lsp = s["joint_sets"]["LSP14"]
    assert len(lsp["names"]) == 14 and len(lsp["edges"]) == len(lsp["edge_colors"])
    assert "rgb(0,220,0)" in lsp["edge_colors"]  # streampose.draw's centre colour (BGR 0,220,0)
    assert is_loopback("127.0.0.1") and is_loopback("::1") and not is_loopback("0.0.0.0")


# --- in a real browser ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if CHROMIUM is None or DRIVER is None:
        pytest.skip(NEEDS_BROWSER)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # never download a driver or a browser
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1100,700"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def clip(studio_clip: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cut(studio_clip, tmp_path_factory.mktemp("view") / "studio150.mp4", 150)  # 3 s at 50 fps


def start_run(clip: Path, endpoint: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([EXE, "run", str(clip), "--publish", endpoint, "--crop", "track+detect", *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_for(what: Callable[[], Any], timeout: float, message: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if got := what():
            return got
        time.sleep(0.1)
    raise AssertionError(message)


SKELETON_PIXELS = """
const c = document.querySelector('[data-stream="s0"] canvas');
if (!c || !c.width) return 0;
const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
let n = 0;
for (let i = 0; i < d.length; i += 4) {
  if (Math.abs(d[i]) < 8 && Math.abs(d[i + 1] - 220) < 8 && Math.abs(d[i + 2]) < 8) n++;  // centre limbs
}
return n;
"""


UPDATES = "return Number(document.querySelector('[data-stream=\"s0\"] .fps').dataset.updates || 0);"


def text(driver: Any, selector: str) -> str:
    return str(driver.execute_script(f"const e = document.querySelector('[data-stream=\"s0\"] {selector}');"
                                     "return e ? e.textContent : '';"))


def test_the_page_shows_a_live_run_ends_with_it_and_comes_back_with_the_next(browser: Any, clip: Path,
                                                                            tmp_path: Path) -> None:
    endpoint = free_endpoint()
    with Viewer(endpoint, port=0) as viewer:
        browser.get(viewer.url)
        run = start_run(clip, endpoint, "--live", "--preview")
        try:
            wait_for(lambda: text(browser, ".name") == "s0", 30, "no panel for stream s0")
            # the skeleton in its colours over the preview, read back from the canvas
            wait_for(lambda: browser.execute_script(SKELETON_PIXELS) > 30, 15, "no skeleton pixels on the canvas")
            size = browser.execute_script("const c = document.querySelector('[data-stream=\"s0\"] canvas');"
                                          "return [c.width, c.height];")
            assert size == [640, round(1002 * 640 / 1000)]  # the preview's size: the 1000 x 1002 frames, 640 wide
            wait_for(lambda: re.fullmatch(r"[\d.]+ fps", text(browser, ".fps")), 10, "no fps figure")
            browser.save_screenshot(str(tmp_path / "viewer.png"))
            if os.environ.get("STREAMPOSE_SCREENSHOT"):  # how the README's picture is made
                shutil.copy(tmp_path / "viewer.png", os.environ["STREAMPOSE_SCREENSHOT"])
            updates = browser.execute_script(UPDATES)
            wait_for(lambda: browser.execute_script(UPDATES) > updates, 10, "the fps figure does not update")
            assert re.fullmatch(r"latency \d+ ms", text(browser, ".latency"))
            assert run.wait(timeout=60) == 0, run.stderr.read() if run.stderr else ""
            wait_for(lambda: text(browser, ".state") == "ended", 10, "the page does not say the stream ended")
        finally:
            run.kill()
            run.wait()
        # a new run on the same endpoint: the same page follows it, skeleton-only (no previews)
        run = start_run(clip, endpoint, "--live")
        try:
            wait_for(lambda: text(browser, ".state") == "running", 30, "the page does not follow the next run")
            wait_for(lambda: browser.execute_script(SKELETON_PIXELS) > 30, 15, "no skeleton without previews")
            assert browser.execute_script("const c = document.querySelector('[data-stream=\"s0\"] canvas');"
                                          "return c.width;") == 640
            assert run.wait(timeout=60) == 0
            wait_for(lambda: text(browser, ".state") == "ended", 10, "the second run's end is not shown")
        finally:
            run.kill()
            run.wait()
    assert not [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]


def test_a_stream_name_is_shown_as_text_never_as_html(browser: Any) -> None:
    """Stream ids come from whoever publishes: one that looks like markup must stay text."""
    from streampose.publish import Publisher

    endpoint = free_endpoint()
    evil = "<img src=x onerror=window.pwned=1>"
    with Viewer(endpoint, port=0) as viewer, Publisher(endpoint) as pub:
        browser.get(viewer.url)

        def shown() -> bool:
            pub.send(PoseMessage(evil, 0, 0.0, time.time(), time.time(), (640, 480), "LSP14"))
            return bool(browser.execute_script("return document.querySelectorAll('.panel').length"))

        wait_for(shown, 20, "the panel never appeared")
        assert browser.execute_script("return document.querySelector('.panel .name').textContent") == evil
        assert browser.execute_script("return document.querySelectorAll('.panel img').length") == 0
        assert browser.execute_script("return window.pwned === undefined")


def test_several_people_each_get_their_own_colour(browser: Any) -> None:
    from streampose.draw import PEOPLE_COLORS
    from streampose.publish import Publisher
    from streampose.wire import Person

    def standing(x: float) -> np.ndarray:
        """A confident upright LSP14 pose around column x of a 640 x 480 frame."""
        ys = [420, 340, 260, 260, 340, 420, 250, 200, 150, 150, 200, 250, 140, 90]
        xs = [x - 20, x - 20, x - 15, x + 15, x + 20, x + 20, x - 50, x - 45, x - 30, x + 30, x + 45, x + 50, x, x]
        return np.array([[a, b, 0.9] for a, b in zip(xs, ys, strict=True)], np.float32)

    endpoint = free_endpoint()
    people = (Person(0, standing(160), (80, 60, 160, 380), 0.9), Person(1, standing(480), (400, 60, 160, 380), 0.9))
    count = """const d = document.querySelector('.panel canvas').getContext('2d').getImageData(0, 0, 640, 480).data;
    let n = 0; for (let i = 0; i < d.length; i += 4) if (d[i] === arguments[0] && d[i + 1] === arguments[1]
    && d[i + 2] === arguments[2]) n++; return n;"""
    with Viewer(endpoint, port=0) as viewer, Publisher(endpoint) as pub:
        browser.get(viewer.url)

        def drawn() -> bool:
            pub.send(PoseMessage("two", 0, 0.0, time.time(), time.time(), (640, 480), "LSP14", people))
            return bool(browser.execute_script("return document.querySelectorAll('.panel canvas').length"))

        wait_for(drawn, 20, "the panel never appeared")
        for person, (b, g, r) in enumerate(PEOPLE_COLORS[:2]):
            wait_for(lambda r=r, g=g, b=b: browser.execute_script(count, r, g, b) > 100, 10,
                     f"person {person} is not drawn in its colour")
        assert browser.execute_script(count, 0, 220, 0) == 0  # not the one-person limb colours


# --- bound wide: the token --------------------------------------------------------------------------------
def status_of(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


def ws_status(url: str) -> int:
    """The HTTP status of a WebSocket handshake (101 when it opens)."""
    import aiohttp

    async def go() -> int:
        async with aiohttp.ClientSession() as session:
            try:
                async with session.ws_connect(url):
                    return 101
            except aiohttp.WSServerHandshakeError as e:
                return int(e.status)

    return asyncio.run(go())


def test_bound_wide_the_page_and_its_socket_need_the_token() -> None:
    endpoint = free_endpoint()
    view = subprocess.Popen([EXE, "view", endpoint, "--host", "0.0.0.0", "--port", "0"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, preexec_fn=interruptible)
    try:
        assert view.stderr is not None
        lines = [view.stderr.readline(), view.stderr.readline()]
        assert "warning" in lines[0] and "token" in lines[0]
        m = re.search(r"http://0\.0\.0\.0:(\d+)/\?token=([\w-]+)", lines[1])
        assert m, lines
        base, token = f"http://127.0.0.1:{m[1]}", m[2]
        assert status_of(f"{base}/") == 403
        assert status_of(f"{base}/?token=wrong") == 403
        assert status_of(f"{base}/viewer.js") == 403
        assert status_of(f"{base}/?token={token}") == 200
        assert status_of(f"{base}/skeletons.json?token={token}") == 200
        assert ws_status(f"ws://127.0.0.1:{m[1]}/ws") == 403
        assert ws_status(f"ws://127.0.0.1:{m[1]}/ws?token={token}") == 101
    finally:
        view.send_signal(signal.SIGINT)
        assert view.wait(timeout=10) == 0


def test_run_view_serves_the_page_for_the_run_and_keeps_it_up_until_ctrl_c(clip: Path) -> None:
    import aiohttp

    run = subprocess.Popen([EXE, "run", str(clip), "--publish", free_endpoint(), "--crop", "center", "--live",
                            "--view", "127.0.0.1:0"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                           preexec_fn=interruptible)
    try:
        assert run.stderr is not None
        m = re.search(r"(http://127\.0\.0\.1:\d+/)", run.stderr.readline())
        assert m, "no URL printed"
        assert status_of(m[1]) == 200

        async def states() -> list[str]:
            seen: list[str] = []
            async with aiohttp.ClientSession() as session, session.ws_connect(m[1] + "ws") as ws:
                async for msg in ws:
                    if msg.type == aiohttp.WSMsgType.TEXT and msg.json()["kind"] == "status":
                        seen.append(msg.json()["state"])
                        if seen[-1] == "ended":
                            return seen
            return seen

        assert asyncio.run(asyncio.wait_for(states(), 60))[-1] == "ended"
        wait_for(lambda: "until Ctrl-C" in run.stderr.readline(), 10, "the run does not say the page stays up")
        assert status_of(m[1]) == 200  # the run is over, the page is still there
    finally:
        run.send_signal(signal.SIGINT)
        code = run.wait(timeout=10)
    assert code == 0


def test_on_loopback_no_token_is_asked() -> None:
    with Viewer(free_endpoint(), port=0) as viewer:
        assert viewer.token is None and "token" not in viewer.url
        assert status_of(viewer.url) == 200


# --- a slow browser ---------------------------------------------------------------------------------------
def stalled_websocket(port: int) -> socket.socket:
    """A client that opens the page's WebSocket and then never reads: its buffers fill and stay full."""
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.sendall((f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    return s


def fps_of(run: subprocess.CompletedProcess[str]) -> float:
    m = re.search(r"at ([\d.]+) fps", run.stderr)
    assert m, run.stderr
    return float(m[1])


def test_a_stalled_browser_holds_back_neither_the_run_nor_the_other_browsers(clip: Path) -> None:
    import aiohttp

    endpoint = free_endpoint()
    run_args = [EXE, "run", str(clip), "--publish", endpoint, "--crop", "center", "--preview", "30"]
    with Viewer(endpoint, port=0) as viewer:
        alone = subprocess.run(run_args, capture_output=True, text=True, timeout=120)
        stalled = [stalled_websocket(viewer.port) for _ in range(3)]
        wait_for(lambda: viewer.clients == 3, 10, "the stalled clients never connected")

        async def watch() -> list[dict[str, Any]]:
            """A browser that reads: every status and pose it gets until the stream ends."""
            got: list[dict[str, Any]] = []
            async with aiohttp.ClientSession() as session, session.ws_connect(viewer.url + "ws") as ws:
                proc = await asyncio.create_subprocess_exec(*run_args, stdout=asyncio.subprocess.DEVNULL,
                                                            stderr=asyncio.subprocess.PIPE)
                running = False  # what the page is sent first is the state the last run left
                async for msg in ws:
                    if msg.type == aiohttp.WSMsgType.TEXT:
                        m = msg.json()
                        if m["kind"] == "status":
                            running |= m["state"] == "running"
                            if running and m["state"] == "ended":
                                break
                        elif running:
                            got.append(m)
                _, err = await proc.communicate()
                got.append({"stderr": err.decode()})
            return got

        got = asyncio.run(asyncio.wait_for(watch(), 120))
        for s in stalled:
            s.close()
    frames = [m["frame"] for m in got if m.get("kind") == "pose"]
    assert frames and frames == sorted(frames) and frames[-1] == 149  # the reader saw the run through to its end
    with_stalled = fps_of(subprocess.CompletedProcess([], 0, "", got[-1]["stderr"]))
    # by design nothing the page does waits on a browser; a blocked send would stop the stream, not slow it a little
    assert with_stalled > 0.6 * fps_of(alone), (with_stalled, fps_of(alone))
