#!/usr/bin/env bash
# Sets up streampose in ./.venv and runs it once on a real image.
#   ./setup.sh              create/refresh .venv, install, run the default job
#   ./setup.sh --no-run     only create/refresh the environment
# On a machine without an NVIDIA GPU it installs the CPU build of torch (torch==2.13.0) first,
# so that pip never downloads gigabytes of CUDA packages.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
VENV=${STREAMPOSE_VENV:-.venv}
DATA=${STREAMPOSE_DATA:-../shared/data}

if [ ! -x "$VENV/bin/python" ]; then
    echo "==> creating $VENV with $($PYTHON --version)"
    "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "==> NVIDIA GPU found: installing streampose with CUDA torch and the tensorrt extra"
    "${PIP[@]}" install -e '.[dev,cpu,train,scale,tensorrt]'
else
    echo "==> no NVIDIA GPU: installing the CPU build of torch (torch==2.13.0)"
    "${PIP[@]}" install 'torch==2.13.0'
    "${PIP[@]}" install -e '.[dev,cpu,train,scale]'
fi
# type stubs for the TensorRT code (mypy); --no-deps because they pin the GPU-only tensorrt wheel
"${PIP[@]}" install --no-deps 'tensorrt-stubs>=10.13'
# tensorrt-stubs 10.13 does not parse: a parameter named `in` (a keyword) in a few plugin methods, one
# required parameter after defaults, an import of the GPU-only tensorrt_libs. mypy reads a repaired
# copy from typings/ (mypy_path in pyproject.toml); the API it describes is unchanged.
"$VENV/bin/python" - <<'PY'
import pathlib, re, sysconfig
site = pathlib.Path(sysconfig.get_paths()["purelib"])
for pkg in ("tensorrt", "tensorrt_bindings"):
    for stub in (site / pkg).glob("*.pyi"):
        out = pathlib.Path("typings") / pkg / stub.name
        out.parent.mkdir(parents=True, exist_ok=True)
        text = re.sub(r"\bin: ", "in_: ", stub.read_text())
        text = text.replace("channel_axis: int)", "channel_axis: int = ...)")
        text = re.sub(r"^import tensorrt_libs.*$", "", text, flags=re.M)
        out.write_text(text)
PY
# byte-compile the project, as pip does a wheel's files: an editable install is compiled on import, and where
# PYTHONDONTWRITEBYTECODE is set (as on this project's CI machines) on every start, ~50 ms of each command
"$VENV/bin/python" -m compileall -q streampose engine train tools >/dev/null
echo "==> installed: $("$VENV/bin/streampose" --version)"

[ "${1:-}" = "--no-run" ] && exit 0
image="$DATA/images/messi5.jpg"
if [ ! -f "$image" ]; then
    echo "setup.sh: sample image $image not found; set STREAMPOSE_DATA to the shared data folder" >&2
    exit 1
fi
echo "==> streampose run $image"
exec "$VENV/bin/streampose" run "$image"
