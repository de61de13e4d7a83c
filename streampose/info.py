"""What is installed and what this machine can do: `streampose info`."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
from typing import Any

from streampose import backends, models

PACKAGES = ("streampose", "torch", "numpy", "opencv-python-headless", "opencv-python", "av", "pyzmq",
            "msgpack", "openvino", "onnxruntime", "onnx", "tensorrt", "torch-tensorrt")
CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for pkg in PACKAGES:
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def cpu() -> dict[str, Any]:
    """CPU model, usable cores and the vector extensions that decide fp32/bf16/int8 speed."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    model = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
                    break
    except OSError:
        pass
    mem = None
    if hasattr(os, "sysconf") and "SC_PHYS_PAGES" in os.sysconf_names:
        mem = round(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30, 1)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"model": model, "cores": cores, "memory_gib": mem,
            "flags": [f for f in CPU_FLAGS if f in flags]}


def gpus() -> list[dict[str, Any]]:
    import torch

    if not torch.cuda.is_available():
        return []
    out = []
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        out.append({"name": p.name, "compute_capability": f"{p.major}.{p.minor}",
                    "memory_gib": round(p.total_memory / 2**30, 1)})
    return out


def engine_choices() -> list[dict[str, Any]]:
    """The engines `auto` chose on this machine where a model ships more than one (`openvino_backend.fastest`),
    with their timings: what a run here uses, without timing anything now."""
    from streampose.backends.openvino_backend import cache_dir

    out = []
    for record in sorted((cache_dir() / "openvino" / "choices").glob("*.json")):
        try:
            choice = json.loads(record.read_text())
            shown = "engine" in choice["engines"][choice["chosen"]] and "cpu" in choice and all(
                isinstance(e["precision"], str) and isinstance(e["ms"], int | float) for e in choice["engines"])
        except (OSError, ValueError, KeyError, IndexError, TypeError):
            shown = False
        if shown:  # a damaged or foreign record is left out (`fastest` times the engines again for it)
            out.append(choice)
    return out


def report() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions(),
        "backends": backends.installed(),
        "cpu": cpu(),
        "gpus": gpus(),
        "models": {name: name in models.shipped() for name in models.PRESETS},
        "engine_choices": engine_choices(),
    }


def format_report(r: dict[str, Any]) -> str:
    lines = [f"python      {r['python']} on {r['platform']}", "packages"]
    lines += [f"  {k:<24}{v or '-'}" for k, v in r["versions"].items()]
    lines.append("backends    " + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in r["backends"].items()))
    c = r["cpu"]
    lines.append(f"cpu         {c['model']}, {c['cores']} cores, {c['memory_gib']} GiB")
    lines.append(f"cpu flags   {' '.join(c['flags']) or '-'}")
    lines.append("gpus        " + (", ".join(f"{g['name']} (sm {g['compute_capability']}, {g['memory_gib']} GiB)"
                                          for g in r["gpus"]) or "none visible to torch"))
    lines.append("models      " + ", ".join(f"{k} {'installed' if v else 'not trained yet'}"
                                          for k, v in r["models"].items()))
    if not r["engine_choices"]:
        lines.append("auto        no engine choice timed yet (a shipped model's first run times its engines)")
    for choice in r["engine_choices"]:
        timed = [f"{e['precision']} {e['ms']:.1f} ms" for e in choice["engines"]]
        chosen = choice["engines"][choice["chosen"]]
        how = {0: "files: batches side by side", 1: "live: one batch at a time"}.get(choice.get("jobs"), "")
        threads = f", {choice['threads']} thread{'s' * (choice['threads'] > 1)}" if choice.get("threads") else ""
        lines.append(f"auto        runs {chosen['engine']} ({chosen['precision']}): {' vs '.join(timed)} on "
                     f"{choice['cpu']} ({how or 'jobs ' + str(choice.get('jobs'))}{threads})")
    return "\n".join(lines)
