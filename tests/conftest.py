"""Shared fixtures. Real data comes from STREAMPOSE_DATA (default ../shared/data); tests that need
it skip with the reason when it is absent."""

from __future__ import annotations

import http.server
import os
import random
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from engine.source import Source
    from streampose.detector import PersonDetector
    from streampose.publish import Publisher
    from streampose.subscriber import Subscriber

ROOT = Path(__file__).resolve().parents[1]
# models converted for OpenVINO are cached between runs; keep the tests' copies out of the user's cache
os.environ.setdefault("STREAMPOSE_CACHE", str(ROOT / ".pytest_cache" / "streampose"))


def data_dir() -> Path:
    return Path(os.environ.get("STREAMPOSE_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def data() -> Path:
    d = data_dir()
    if not d.is_dir():
        pytest.skip(f"shared data not found at {d}: set STREAMPOSE_DATA to the data folder")
    return d


def shared_file(data: Path, relative: str) -> Path:
    p = data / relative
    if not p.is_file():
        pytest.skip(f"{p} missing from the shared data")
    return p


@pytest.fixture(scope="session")
def messi(data: Path) -> Path:
    return shared_file(data, "images/messi5.jpg")


@pytest.fixture(scope="session")
def studio_clip(data: Path) -> Path:
    return shared_file(data, "video/single_person_studio.mp4")


@pytest.fixture(scope="session")
def basketball_clip(data: Path) -> Path:
    return shared_file(data, "video/basketball_240p.mp4")


@pytest.fixture(scope="session")
def person_detector() -> Iterator[PersonDetector]:
    """The shipped person detector on the fastest backend here, shared: streams that find people borrow it."""
    from streampose.detector import open_detector

    with open_detector() as det:
        yield det


@pytest.fixture(scope="session")
def src() -> Source:
    """The default model as engines are built from it."""
    from engine.source import load_source

    return load_source("hg2-lite")


@pytest.fixture(scope="session")
def onnx_engine(tmp_path_factory: pytest.TempPathFactory, src: Source) -> Path:
    """The default model exported to ONNX (dynamic batch up to 16), with its metadata."""
    from engine.onnx_export import export_onnx

    return export_onnx(src, tmp_path_factory.mktemp("onnx") / "hg2-lite.onnx", max_batch=16)


EXE = shutil.which("streampose", path=str(Path(sys.executable).parent)) or "streampose"


def sp(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """The command as a user runs it; `run` publishes nowhere unless a test asks (the default port may be taken)."""
    extra = ["--publish", "none"] if args[0] == "run" and "--publish" not in args else []
    return subprocess.run([EXE, *args, *extra], capture_output=True, text=True, timeout=timeout)


def one_line_error(r: subprocess.CompletedProcess[str], code: int = 1) -> str:
    """The last stderr line of a command that failed cleanly: the exit code asked for, no traceback."""
    assert r.returncode == code, r.stderr
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) >= 1
    return lines[-1]


def cut(src: Path, dst: Path, frames: int) -> Path:
    """The first `frames` frames of a real clip, re-encoded with their original timestamps."""
    import av

    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        vin = inp.streams.video[0]
        vout = out.add_stream("libx264", rate=vin.average_rate, options={"preset": "ultrafast"})
        vout.width, vout.height, vout.pix_fmt = vin.codec_context.width, vin.codec_context.height, "yuv420p"
        vout.time_base = vin.time_base
        for i, f in enumerate(inp.decode(vin)):
            if i == frames:
                break
            g = av.VideoFrame.from_ndarray(f.to_ndarray(format="bgr24"), format="bgr24")
            g.pts, g.time_base = f.pts, f.time_base
            out.mux(vout.encode(g))
        out.mux(vout.encode())
    return dst


def count_frames(path: Path) -> list[float]:
    """Frame times by an independent decode."""
    import av

    with av.open(str(path)) as c:
        return [float(f.time) for f in c.decode(c.streams.video[0])]


def interruptible() -> None:
    """In the child: Ctrl-C as in a terminal. A shell that starts jobs in the background (`cmd &` in a script)
    has them ignore SIGINT, and Python then installs no KeyboardInterrupt handler: the run would not be
    what a user interrupts."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def free_endpoint() -> str:
    """A loopback endpoint nobody listens on, on a port below the kernel's ephemeral range: a port from that
    range can be taken again, before the test binds it, by any socket's outgoing connection (a ZeroMQ SUB
    retrying its connect to this very port even connects to itself), which made bind fail at random."""
    low = 32768
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        pass
    for port in random.sample(range(max(1024, low - 12000), low), 200):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        return f"tcp://127.0.0.1:{port}"
    raise RuntimeError(f"no free loopback port below {low}")


def synced(pub: Publisher, sub: Subscriber, stream: str = "sync") -> None:
    """Beat ZeroMQ's slow joiner: publish a probe until the subscriber sees one (never a bare sleep), then drain."""
    from streampose.wire import ControlMessage

    for _ in range(200):
        pub.send(ControlMessage(stream, "stats"))
        if sub.recv(timeout=0.05) is not None:
            while sub.recv(timeout=0.05) is not None:
                pass
            return
    raise AssertionError("subscriber never connected")


class Faulty(http.server.ThreadingHTTPServer):
    """Serves one MPEG-TS stream; request n behaves as `modes[n]`: `stall` sends half and then nothing
    (holding the connection open), `full` sends it all, `503` refuses."""

    def __init__(self, payload: bytes, modes: list[str]) -> None:
        self.payload, self.modes, self.released = payload, modes, threading.Event()
        self.requests: list[str] = []
        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/live.ts"


class Handler(http.server.BaseHTTPRequestHandler):
    server: Faulty

    def do_GET(self) -> None:
        srv = self.server
        mode = srv.modes[min(len(srv.requests), len(srv.modes) - 1)]
        srv.requests.append(mode)
        if mode == "503":
            self.send_error(503, "camera offline")
            return
        self.send_response(200)
        self.send_header("Content-Type", "video/mp2t")
        self.send_header("Content-Length", str(len(srv.payload)))
        self.end_headers()
        if mode == "full":
            self.wfile.write(srv.payload)
            return
        self.wfile.write(srv.payload[: len(srv.payload) // 2])
        self.wfile.flush()
        srv.released.wait(30)  # a stream that stops delivering, connection still open

    def log_message(self, *args: object) -> None:
        pass


def serve(clip: Path, modes: list[str]) -> Faulty:
    server = Faulty(clip.read_bytes(), modes)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server



@pytest.fixture
def exact_cuda() -> Iterator[None]:
    """CUDA convolutions in full fp32 for tests that compare against the CPU: on Ampere and later cuDNN uses
    TF32 by default (10-bit mantissa), which an untrained network's large activations amplify past 1e-3 (seen
    on an H200: test_torch_backend_on_cuda_matches_cpu failed with it on)."""
    import torch

    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `cuda` or `tensorrt` skip, with the reason, where that hardware or library is absent."""
    import torch

    from streampose.backends import installed

    reasons = {}
    if not torch.cuda.is_available():
        reasons["cuda"] = "needs a CUDA GPU; torch sees none here"
    if not torch.cuda.is_available() or not installed()["tensorrt"]:
        reasons["tensorrt"] = "needs a CUDA GPU and the TensorRT libraries (pip install -e '.[tensorrt]')"
    for item in items:
        for mark, why in reasons.items():
            if mark in item.keywords:
                item.add_marker(pytest.mark.skip(reason=why))
