"""Run `streampose` commands in one process from which some packages are hidden, as an install flavour that
lacks them would be (tests/test_install.py says which, from pyproject.toml's extras).

    python tests/flavour.py BLOCKED_JSON CHECKS_JSON

BLOCKED_JSON: top-level module names that cannot be imported; CHECKS_JSON: a list of argument lists for
`streampose.cli.main`. Prints one JSON object per check: its arguments, exit code and stderr.

The engine builders are the slow part of `build` and `export` (20 s and more here, and test_engine.py runs
them for real): here they are replaced by stand-ins that import what the real ones import first and take
the same inputs, so that everything the commands do before building runs, and a missing library still shows.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
from pathlib import Path
from typing import Any


def export_onnx(src: Any, out: Any, *args: Any, **kwargs: Any) -> Path:
    import onnx  # noqa: F401  (what the exporter needs: onnx, and onnxscript for torch's dynamo exporter)
    import onnxscript  # noqa: F401

    return Path(out)


def build_openvino(src: Any, out: Any, precision: str = "fp32", *args: Any,
                   calibration: Any = None, **kwargs: Any) -> Path:
    import openvino  # noqa: F401

    if precision == "int8":
        import nncf  # noqa: F401

        assert calibration is not None and calibration.ndim == 4 and len(calibration) > 0, "no calibration crops"
    return Path(out)


def main() -> None:
    blocked, checks = set(json.loads(sys.argv[1])), json.loads(sys.argv[2])
    for name in blocked:  # `import name` raises ModuleNotFoundError, importlib.util.find_spec(name) is None
        sys.modules[name] = None  # type: ignore[assignment]
    import engine.onnx_export
    import engine.openvino_build
    from streampose.cli import main as cli

    engine.onnx_export.export_onnx = export_onnx
    engine.openvino_build.build_openvino = build_openvino
    for args in checks:
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                code = cli(args)
            except SystemExit as e:  # argparse: --help, usage errors
                code = e.code if isinstance(e.code, int) else 1
            except BaseException as e:
                code, err = -1, io.StringIO(f"raised {type(e).__name__}: {e}")
        print(json.dumps({"args": args, "code": code, "stderr": err.getvalue()}), flush=True)


if __name__ == "__main__":
    main()
