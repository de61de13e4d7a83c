"""One virtual environment per peer, kept between runs.

Peers pin dependencies that conflict with ours (mediapipe 0.10.21 wants numpy < 2 and
opencv-contrib-python), so each runs in its own venv, created with this interpreter's base Python
(`python -m venv`), under `~/.cache/streampose/peers/<name>-venv` unless told otherwise. A venv is
reused while its marker file records the same requirements and Python version; `refresh` rebuilds it.

    python tools/peers/envs.py mediapipe          # create (or check) the venv, print its python
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

MARKER = "streampose-peer.json"


@dataclass(frozen=True)
class Peer:
    """A model from another project, run by `runner` inside its own venv."""

    name: str
    label: str
    """How tables name it."""
    requirements: tuple[str, ...]
    """Pinned pip requirements."""
    runner: str
    """Script beside this file, run with the venv's python."""
    size_note: str
    """What installing it downloads, for the progress message."""


PEERS = {
    # numpy, OpenCV and jax pinned to the versions pip settles on for mediapipe 0.10.21: left open, pip
    # downloads every newer opencv-contrib and jaxlib (about 80 MB each) before finding they need numpy 2
    "mediapipe": Peer("mediapipe", "MediaPipe BlazePose full",
                      ("mediapipe==0.10.21", "numpy==1.26.4", "opencv-contrib-python==4.11.0.86", "jax==0.7.1",
                       "jaxlib==0.7.1"),
                      "mediapipe_runner.py", "about 300 MB: mediapipe 36 MB, OpenCV 69 MB, jaxlib, scipy, ..."),
}


def cache_root() -> Path:
    """$STREAMPOSE_CACHE/peers, default ~/.cache/streampose/peers (the OpenVINO cache's parent)."""
    return Path(os.environ.get("STREAMPOSE_CACHE", Path.home() / ".cache" / "streampose")) / "peers"


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def marker_for(peer: Peer) -> dict[str, object]:
    """What a venv must have been built with to be reused."""
    return {"requirements": list(peer.requirements), "python": list(sys.version_info[:2])}


def is_current(venv: Path, peer: Peer) -> bool:
    """The venv exists, was completed for these requirements and this Python, and its python runs."""
    try:
        marker = json.loads((venv / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return marker == marker_for(peer) and venv_python(venv).is_file()


def ensure_venv(peer: Peer, root: Path | None = None, refresh: bool = False, log: bool = True) -> Path:
    """The python of the peer's venv `root/<name>-venv` (root default `cache_root()`), creating the
    venv and installing the pinned requirements when needed.

    Progress goes to stderr (pip's own output included), so stdout stays clean for results."""
    venv = (root or cache_root()) / f"{peer.name}-venv"
    if not refresh and is_current(venv, peer):
        return venv_python(venv)
    if venv.exists():
        shutil.rmtree(venv)
    if log:
        print(f"peers: creating {venv} and installing {' '.join(peer.requirements)} ({peer.size_note}); "
              "this happens once", file=sys.stderr, flush=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    # `-m venv` from inside a venv builds on the base interpreter (sys._base_executable)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv_python(venv)
    pip = [str(py), "-m", "pip", "install", "--disable-pip-version-check", "--progress-bar", "on"]
    result = subprocess.run([*pip, *peer.requirements], stdout=sys.stderr, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"pip could not install {' '.join(peer.requirements)} into {venv} "
                           f"(exit {result.returncode}); see pip's output above")
    (venv / MARKER).write_text(json.dumps(marker_for(peer)))
    if log:
        print(f"peers: {peer.name} ready in {venv}", file=sys.stderr, flush=True)
    return py


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("peer", choices=list(PEERS))
    ap.add_argument("--venv-dir", type=Path, help=f"where peer venvs live, as DIR/<peer>-venv (default {cache_root()})")
    ap.add_argument("--refresh", action="store_true", help="rebuild the venv even if it is current")
    args = ap.parse_args()
    print(ensure_venv(PEERS[args.peer], args.venv_dir, refresh=args.refresh))


if __name__ == "__main__":
    main()
