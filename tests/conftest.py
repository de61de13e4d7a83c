"""Shared fixtures. Real data comes from STREAMPOSE_DATA (default ../shared/data); tests that need
it skip with the reason when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
