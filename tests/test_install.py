"""Each install flavour runs the commands it offers: `pip install streampose`, `[cpu]`, `[train]`, `[tensorrt]`.

A flavour is emulated in a subprocess (tests/flavour.py) that cannot import the packages it would not
install: those that only pyproject.toml's other extras bring in, following every installed package's own
requirements (so what a flavour gets through a dependency of a dependency stays importable). Every command
must then work, or stop with a one-line error that names the extra to install; never an internal error.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import re
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT

tomllib = pytest.importorskip("tomllib")  # Python 3.11+
requirements = pytest.importorskip("packaging.requirements")

COMMANDS = ["run", "listen", "keys", "info", "train", "eval", "export", "build", "verify", "bench", "batch", "proxy"]
FLAVOURS = {
    "streampose": (), "streampose[cpu]": ("cpu",), "streampose[train]": ("train",),
    "streampose[tensorrt]": ("tensorrt",),  # here without TensorRT itself: its build says what to install
    "streampose[scale]": ("scale",),
}


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def project() -> dict[str, Any]:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return dict(tomllib.load(f)["project"])


def closure(reqs: Iterable[str]) -> set[str]:
    """The distributions these requirements install, through the installed packages' own requirements."""
    found: set[tuple[str, str]] = set()
    todo = [(r, "") for r in reqs]  # a requirement and the extra of the package that asks for it
    while todo:
        text, extra = todo.pop()
        req = requirements.Requirement(text)
        if req.marker is not None and not req.marker.evaluate({"extra": extra}):
            continue
        for e in ("", *req.extras):
            if (norm(req.name), e) in found:
                continue
            found.add((norm(req.name), e))
            try:
                todo += [(r, e) for r in md.requires(req.name) or []]
            except md.PackageNotFoundError:  # not installed here (tensorrt on a CPU machine): nothing to hide
                pass
    return {name for name, _ in found}


def hidden_modules(extras: Iterable[str]) -> set[str]:
    """Top-level modules that the other extras bring in and this flavour does not."""
    p = project()
    optional = p["optional-dependencies"]
    everything = closure(r for reqs in optional.values() for r in reqs)
    flavour = closure([*p["dependencies"], *optional["dev"], *(r for e in extras for r in optional[e])])
    hidden = everything - flavour
    return {module for module, dists in md.packages_distributions().items()
            if module.isidentifier() and all(norm(d) in hidden for d in dists)} - vendored(flavour)


def vendored(names: Iterable[str]) -> set[str]:
    """Modules that a distribution of the flavour carries inside itself (Ray's `thirdparty_files`: psutil,
    colorama), importable there whatever else is installed."""
    found = set()
    for name in names:
        try:
            files = md.files(name) or []
        except md.PackageNotFoundError:
            continue
        for f in files:
            if "thirdparty_files" in f.parts[:-1]:
                found.add(f.parts[f.parts.index("thirdparty_files") + 1])
    return {m for m in found if m.isidentifier()}


def test_the_cpu_flavour_lacks_the_train_extras_packages() -> None:
    """The emulation hides what the issue's user lacked (`pip install -e '.[dev,cpu]'`), keeps what cpu brings."""
    hidden = hidden_modules(["cpu"])
    assert {"h5py", "matplotlib"} <= hidden
    assert not {"openvino", "nncf", "onnxruntime", "onnx", "torch", "cv2", "scipy"} & hidden
    assert {"openvino", "nncf", "onnxruntime", "onnx"} <= hidden_modules([])


def test_a_module_of_a_missing_extra_is_named_with_the_extra_to_install() -> None:
    """The command line's table of optional modules lists every package of every extra, with its extras."""
    from streampose.cli import OPTIONAL, missing_extra

    listed = {(norm(requirements.Requirement(r).name), extra)
              for extra, reqs in project()["optional-dependencies"].items() if extra != "dev" for r in reqs}
    assert {(norm(package), extra) for package, extras in OPTIONAL.values() for extra in extras} == listed
    assert missing_extra(ModuleNotFoundError("No module named 'h5py'", name="h5py")) == (
        "this needs h5py, which the train extra installs: pip install 'streampose[train]'")
    assert "pip install 'streampose[cpu]'" in str(missing_extra(ModuleNotFoundError(name="onnx.checker")))
    assert missing_extra(ModuleNotFoundError(name="PIL")) is None  # a core dependency: a broken install, a bug


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_every_command_of_an_install_flavour_starts(flavour: str, data: Path, messi: Path, tmp_path: Path) -> None:
    if not (data / "lspet" / "joints.mat").is_file():
        pytest.skip("LSPET missing from the shared data")
    extras = FLAVOURS[flavour]
    lsp = f"lsp:{data}/lspet@1-2"
    junk_h5 = tmp_path / "annot.h5"
    junk_h5.write_bytes(b"not hdf5")
    checks = {
        "help": ["--help"], **{f"{c} help": [c, "--help"] for c in COMMANDS}, "info": ["info", "--json"],
        "run": ["run", str(messi), "--untrained", "--backend", "torch", "--crop", "center", "--publish", "none"],
        "eval lsp": ["eval", "hg2-lite", "--data", lsp],
        "eval mpii h5": ["eval", "hg2-lite", "--data", f"mpii:{junk_h5}"],
        "build int8": ["build", "hg2-lite", "--target", "openvino", "--precision", "int8", "--calib-data", lsp,
                       "--calib-images", "2", "--no-check", "-o", str(tmp_path / "e.xml")],
        "export": ["export", "hg2-lite", "--no-check", "-o", str(tmp_path / "e.onnx")],
        "batch ray": ["batch", str(messi), "--out", str(tmp_path / "b1"), "--ray", "127.0.0.1:1"],
        "batch parquet": ["batch", str(messi), "--out", str(tmp_path / "b2"), "--format", "parquet", "--crop", "center",
                          "--backend", "torch"],
    }
    r = subprocess.run([sys.executable, str(ROOT / "tests" / "flavour.py"), json.dumps(sorted(hidden_modules(extras))),
                        json.dumps(list(checks.values()))], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    done = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(done) == len(checks), r.stdout
    results = dict(zip(checks, done, strict=True))
    for name, c in results.items():  # works, or one line naming what to install; never a crash
        assert c["code"] in (0, 1), f"{flavour}: {name}: exit {c['code']}: {c['stderr']}"
        if c["code"] == 1:
            assert "internal error" not in c["stderr"] and "Traceback" not in c["stderr"], c["stderr"]
            assert c["stderr"].strip().splitlines()[-1].startswith(f"streampose {c['args'][0]}: error:"), c["stderr"]

    def error(name: str) -> str:
        return str(results[name]["stderr"]).strip().splitlines()[-1] if results[name]["code"] else ""

    for name in ["help", *(f"{c} help" for c in COMMANDS), "info", "run"]:
        assert not error(name), f"{flavour}: {name}: {results[name]['stderr']}"
    # evaluating reads LSP images in every flavour: an engine is evaluated without the training packages
    assert not error("eval lsp"), f"{flavour}: {results['eval lsp']['stderr']}"
    # MPII's .h5 annotations need h5py, which the train extra brings: named where it is missing
    if "train" in extras:
        assert "not a readable HDF5 file" in error("eval mpii h5")
    else:
        assert "pip install 'streampose[train]'" in error("eval mpii h5"), results["eval mpii h5"]["stderr"]
    # build reads its int8 calibration crops in every flavour, and needs the cpu extra to build
    if "cpu" in extras:
        assert not error("build int8"), results["build int8"]["stderr"]
    else:
        assert "pip install 'streampose[cpu]'" in error("build int8"), results["build int8"]["stderr"]
    # Ray and Parquet come with the scale extra
    if "scale" in extras:
        assert "unreachable" in error("batch ray") and not error("batch parquet"), results["batch parquet"]["stderr"]
    else:
        for name in ("batch ray", "batch parquet"):
            assert "pip install 'streampose[scale]'" in error(name), results[name]["stderr"]
    if {"cpu", "tensorrt"} & set(extras):
        assert not error("export"), results["export"]["stderr"]
    else:
        assert "pip install 'streampose[cpu]'" in error("export"), results["export"]["stderr"]
