"""Promise 7, security: loopback by default, a warning for wide binds, CURVE encryption with readers
admitted by key (real sockets, real clients with and without the key, real `run` / `listen` processes),
and no pickle in the wire path. Fuzzing of the decoder and the command line is in test_fuzz.py;
checkpoints loading with weights_only in test_checkpoint.py; engine metadata checks in test_engine.py."""

from __future__ import annotations

import ast
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import EXE, free_endpoint, one_line_error, sp, synced

import streampose
from streampose import curve
from streampose.publish import DEFAULT_ENDPOINT, Publisher
from streampose.subscriber import Subscriber
from streampose.wire import ControlMessage


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    r = sp("keys", str(tmp_path / "keys"))
    assert r.returncode == 0, r.stderr
    return tmp_path / "keys"


def test_keys_command_writes_a_server_and_an_authorized_reader(keys: Path) -> None:
    names = sorted(str(p.relative_to(keys)) for p in keys.rglob("*") if p.is_file())
    assert names == ["authorized/client.key", "client.key", "client.key_secret", "server.key", "server.key_secret"]
    for secret in keys.glob("*.key_secret"):
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    server = (keys / "server.key_secret").read_bytes()
    assert sp("keys", str(keys), "--name", "cam2").returncode == 0  # another reader; the server keypair is kept
    assert (keys / "server.key_secret").read_bytes() == server and (keys / "authorized" / "cam2.key").is_file()
    assert "exists already" in one_line_error(sp("keys", str(keys), "--name", "cam2"))
    with Publisher("tcp://127.0.0.1:*", curve_keys=keys) as pub, \
            Subscriber(pub.endpoint, control=True, curve_keys=keys / "cam2.key_secret") as cam2:
        synced(pub, cam2)  # the second reader is admitted with its own keypair


def received(sub: Subscriber, pub: Publisher, seconds: float) -> int:
    """How many of the messages published for `seconds` reach `sub`."""
    got, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        pub.send(ControlMessage("s0", "stats", {"secret": "pose data"}))
        got += sub.recv(timeout=0.02) is not None
    return got


def stranger(tmp_path: Path, keys: Path) -> Path:
    """A reader that has the server's public key but a keypair of its own the publisher never admitted."""
    d = tmp_path / "stranger"
    curve.generate(d)
    (d / "server.key").write_bytes((keys / "server.key").read_bytes())
    return d


def test_curve_admits_only_readers_with_an_authorized_key(keys: Path, tmp_path: Path) -> None:
    with Publisher("tcp://127.0.0.1:*", curve_keys=keys) as pub, \
            Subscriber(pub.endpoint, control=True, curve_keys=keys) as good, \
            Subscriber(pub.endpoint, control=True) as plain, \
            Subscriber(pub.endpoint, control=True, curve_keys=stranger(tmp_path, keys)) as unknown:
        synced(pub, good)
        counts = {"with the key": received(good, pub, 1.0), "no key": received(plain, pub, 0.5),
                  "unauthorized key": received(unknown, pub, 0.5)}
    print(counts)
    assert counts["with the key"] > 10 and counts["no key"] == 0 and counts["unauthorized key"] == 0


def test_missing_keys_are_one_line_errors(tmp_path: Path, messi: Path) -> None:
    with pytest.raises(curve.CurveError, match="streampose keys"):
        Publisher("tcp://127.0.0.1:*", curve_keys=tmp_path)
    with pytest.raises(curve.CurveError, match="no such key file"):
        Subscriber("tcp://127.0.0.1:5555", curve_keys=tmp_path)
    line = one_line_error(sp("run", str(messi), "--untrained", "--publish", "tcp://127.0.0.1:*",
                             "--curve-keys", str(tmp_path)))
    assert "streampose keys" in line


def test_encrypted_run_reaches_a_keyed_listen_and_not_a_plain_one(keys: Path, tmp_path: Path,
                                                                   studio_clip: Path) -> None:
    endpoint, out = free_endpoint(), tmp_path / "poses.jsonl"
    listeners = [subprocess.Popen([EXE, "listen", endpoint, *extra, "--timeout", "30"], stderr=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
                 for extra in (["--curve-keys", str(keys), "--jsonl", str(out), "--until-eos"], ["--count", "1"])]
    try:
        run = sp("run", str(studio_clip), "--backend", "torch", "--max-frames", "20", "--publish", endpoint,
                 "--curve-keys", str(keys), timeout=120)
        keyed = listeners[0].communicate(timeout=60)[1]
        listeners[1].terminate()  # it never gets a message: it would wait out its timeout
        plain = listeners[1].communicate(timeout=10)[0]
    finally:
        for p in listeners:
            p.kill()
    assert run.returncode == 0, run.stderr
    assert listeners[0].returncode == 0, keyed
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) >= 10 and rows[-1]["frame"] == 19  # joined in time, then every pose to the end
    assert listeners[1].returncode == 143 and plain == ""  # stopped by us, having printed no pose


def test_default_endpoint_is_loopback_and_wide_binds_warn(capfd: pytest.CaptureFixture[str]) -> None:
    assert DEFAULT_ENDPOINT.startswith("tcp://127.0.0.1:")
    assert f"default: {DEFAULT_ENDPOINT}" in " ".join(sp("run", "--help").stdout.split())
    with Publisher("tcp://127.0.0.1:*"):
        pass
    assert capfd.readouterr().err == ""
    with Publisher("tcp://*:*"):
        pass
    err = capfd.readouterr().err
    assert "reachable from other machines" in err and "--curve-keys" in err


def test_no_pickle_in_the_wire_path() -> None:
    """The modules that touch bytes from the network import no pickle (nor anything built on it)."""
    root = Path(streampose.__file__).parent
    for name in ("wire", "publish", "subscriber", "curve", "sinks", "outputs", "proxy"):
        tree = ast.parse((root / f"{name}.py").read_text())
        imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        imported |= {(n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not imported & {"pickle", "cPickle", "dill", "cloudpickle", "shelve", "marshal"}, name
        text = (root / f"{name}.py").read_text()
        assert "recv_pyobj" not in text and "send_pyobj" not in text, name


def test_openvino_reports_nothing_and_leaves_no_sender_behind(tmp_path: Path) -> None:
    """OpenVINO's package sends usage events to Google Analytics by default, on import and on each conversion,
    from forked processes joined at exit (one deadlocked and hung `streampose run` after its error). A run with
    OpenVINO, converting on a fresh cache, must load no telemetry and fork nothing."""
    pytest.importorskip("openvino")
    code = ("import multiprocessing, sys\n"
            "import streampose\n"
            "with streampose.PoseEstimator('hg2-lite', backend='openvino') as est:\n"
            "    est(__import__('numpy').zeros((240, 320, 3), 'uint8'))\n"
            "print(sys.modules.get('openvino_telemetry', 'never imported'), len(multiprocessing.active_children()))\n")
    env = {**os.environ, "STREAMPOSE_CACHE": str(tmp_path / "cache")}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == ["None", "0"], r.stdout
    assert any((tmp_path / "cache").rglob("*.xml"))  # it did convert
