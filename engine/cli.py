"""`streampose export`, `streampose build` and `streampose verify`, registered into the main command line."""

from __future__ import annotations

import argparse
import json
import sys

from engine.build import MIN_AGREEMENT, TARGETS
from streampose import models
from streampose.joints import PERSON
from streampose.sources import default_clip

DATA_HELP = "FORMAT:PATH[@range] of real people to crop (default: 64 LSPET validation images)"


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    e = sub.add_parser("export", help="export a model to ONNX (dynamic batch), checked against PyTorch",
                       description="Export the last stack's heatmaps to ONNX with a dynamic batch dimension and "
                                   "the weights inside the file, write OUT.json beside it, then check ONNX Runtime's "
                                   "output against PyTorch on real person crops.")
    e.add_argument("model", help="model name (hg2-lite, hg2) or checkpoint path")
    e.add_argument("-o", "--out", default=None, help="output .onnx (default: engines/NAME.onnx)")
    e.add_argument("--opset", type=int, default=18, help="ONNX opset, 17-20 (default: %(default)s)")
    e.add_argument("--fp16", action="store_true", help="export an FP16 graph (what TensorRT 11 builds from)")
    _common(e)
    e.set_defaults(func=cmd_export)

    b = sub.add_parser("build", help="build an OpenVINO (CPU) or TensorRT (GPU) engine from a model",
                       description="Build a deployable engine from a model name or checkpoint and verify it "
                                   "against PyTorch. OpenVINO: fp32, bf16 (CPUs with AVX512-BF16/AMX) or int8 "
                                   "(calibrated on real person crops). TensorRT: an FP16 plan for this GPU and "
                                   "TensorRT version (rebuild when either changes; --cache does that for you).")
    b.add_argument("model", help="model name (hg2-lite, hg2) or checkpoint path")
    b.add_argument("--target", required=True, choices=[t for t in TARGETS if t != "onnx"])
    b.add_argument("--precision", default=None,
                   help="openvino: fp32 (default), bf16 or int8; tensorrt: fp16 (default)")
    b.add_argument("-o", "--out", default=None, help="output file (default: engines/NAME-PRECISION.xml|.plan)")
    b.add_argument("--via", default="tensorrt", choices=["tensorrt", "torch-tensorrt"],
                   help="tensorrt: build a plan from ONNX (default) or a torch-tensorrt program (.ep)")
    b.add_argument("--cache", default=None, metavar="DIR",
                   help="keep engines in DIR keyed on weights, precision, versions and GPU: reuse when all "
                        "match, rebuild when anything changed")
    b.add_argument("--calib-data", default=None,
                   help="int8 calibration set, a dataset spec; 'A + B' joins two (default: 300 LSPET training images)")
    b.add_argument("--calib-images", type=int, default=300, help="how many people to calibrate on")
    b.add_argument("--workspace-gib", type=float, default=2.0, help="tensorrt builder workspace limit")
    b.add_argument("--timing-cache", default="engines/tensorrt.timing-cache",
                   help="tensorrt timing cache, kept across builds (default: %(default)s)")
    _common(b)
    b.set_defaults(func=cmd_build)

    v = sub.add_parser("verify", help="compare an engine with its PyTorch checkpoint on real crops",
                       description="Run an engine and its PyTorch checkpoint on the same real person crops; report "
                                   "the heatmap difference and keypoint agreement (joints within 0.5 heatmap px). "
                                   "Exits 2 when agreement is below the threshold.")
    v.add_argument("engine", help="engine file built by streampose (.onnx, .xml, .plan, .ep)")
    v.add_argument("--checkpoint", default=None, help="reference checkpoint (default: the one it was built from)")
    v.add_argument("--data", default=None, help=DATA_HELP)
    v.add_argument("--limit", type=int, default=0, help="use only the first N people")
    v.add_argument("--backend", default="auto", help="backend to run the engine with (default: %(default)s)")
    v.add_argument("--threshold", type=float, default=None,
                   help="minimum agreement (default by precision: "
                        + ", ".join(f"{k} {v}" for k, v in MIN_AGREEMENT.items()) + ")")
    v.add_argument("--json", action="store_true", help="print the result as JSON")
    v.set_defaults(func=cmd_verify)


    n = sub.add_parser("bench", help="benchmark backends (model-only) and the full pipeline on a real clip",
                       description="Model-only: every available backend x precision x batch size, with the achieved "
                                   "GFLOP/s as a share of this CPU's peak, measured by a short GEMM probe in the same "
                                   "run. With --e2e CLIP: the clip through the whole runtime (decode, crop, infer, "
                                   "publish to a subscriber) against the same backend alone, alternating the two; "
                                   "with --live, the clip is played at its native rate and the capture-to-publish "
                                   "latency is what counts. Engines are built once into --cache. Run on an idle "
                                   "machine.")
    n.add_argument("--model-only", action="store_true", help="model-only table (default; with --e2e: both)")
    n.add_argument("--e2e", metavar="CLIP", default=None, help="run this clip end to end through the runtime")
    n.add_argument("--live", action="store_true", help="--e2e as a live source (native rate, stale frames dropped)")
    n.add_argument("--previews", default="0", metavar="FPS,...",
                   help="--e2e with these preview rates (run --preview; 0: none), a row each, e.g. 0,10 "
                        "(default: %(default)s)")
    n.add_argument("--streams", default="1", help="--e2e with N copies of the clip at once, e.g. 1,2,4 (fps is all "
                                                   "streams together)")
    n.add_argument("--models", default=",".join(models.shipped()) or models.DEFAULT,
                   help="comma-separated model names or checkpoints; a named model without installed weights is "
                        "timed with random weights (default: %(default)s)")
    n.add_argument("--backends", default="", help="comma-separated subset (default: every available one)")
    n.add_argument("--batches", default="1,4,8", help="batch sizes (default: %(default)s)")
    n.add_argument("--jobs", default=None,
                   help="batches the backend runs side by side, e.g. 1,0 (0: as many as it runs best, OpenVINO's "
                        "streams; 1: one at a time on all cores). Default: 1 for model-only; for --e2e what the "
                        "runtime picks, 0 on files and 1 with --live")
    n.add_argument("--rounds", type=int, default=5, help="timed rounds per figure; the median is reported")
    n.add_argument("--cache", default="engines/cache", help="where engines are built and reused")
    n.add_argument("--json", default=None, help="also write the results (and the measured peaks) to this file")
    n.add_argument("--soak", type=int, metavar="FRAMES",
                   help="soak: loop --soak-clip through the runtime for FRAMES poses at the largest of --batches, "
                        "sampling memory (RSS) and fps per pass; writes soak.json and soak.png to --soak-out")
    n.add_argument("--soak-clip", default=default_clip(), metavar="CLIP", help="clip to loop (default: %(default)s)")
    n.add_argument("--soak-out", default="docs/soak", metavar="DIR", help="where to write (default: %(default)s)")
    n.set_defaults(func=cmd_bench)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-batch", type=int, default=32, help="largest batch the engine accepts (default: 32)")
    p.add_argument("--opt-batch", type=int, default=None, help="batch to optimise for (tensorrt default 8, else 1)")
    p.add_argument("--check-data", default=None, help=DATA_HELP)
    p.add_argument("--no-check", action="store_true", help="skip the check against PyTorch")


def _check(path: str, args: argparse.Namespace) -> int:
    """Verify a fresh engine against PyTorch unless asked not to; a missing dataset is said, not hidden."""
    from engine.build import verify
    from train.datasets import DatasetError

    if args.no_check:
        print(f"wrote {path} (not checked against PyTorch: --no-check)")
        return 0
    try:
        result, name, precision = verify(path, data=args.check_data)
    except DatasetError as e:
        print(f"wrote {path}, NOT checked against PyTorch: {e} (set STREAMPOSE_DATA or pass --check-data)",
              file=sys.stderr)
        return 0
    threshold = MIN_AGREEMENT[precision]
    print(f"wrote {path}\n{name} {precision} vs torch fp32: {result.summary()}")
    if result.agreement < threshold:
        print(f"error: keypoint agreement {100 * result.agreement:.1f}% is below {100 * threshold:.0f}%",
              file=sys.stderr)
        return 2
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from engine.build import build

    path = build(args.model, "onnx", "fp16" if args.fp16 else "fp32", out=args.out, max_batch=args.max_batch,
                 opt_batch=args.opt_batch)
    return _check(str(path), args)


def cmd_build(args: argparse.Namespace) -> int:
    from engine.build import build

    path = build(args.model, args.target, args.precision, out=args.out, max_batch=args.max_batch,
                 opt_batch=args.opt_batch, via=args.via, cache=args.cache, calib_data=args.calib_data,
                 calib_images=args.calib_images, workspace_gib=args.workspace_gib, timing_cache=args.timing_cache)
    return _check(str(path), args)


def cmd_verify(args: argparse.Namespace) -> int:
    from engine.build import verify

    result, name, precision = verify(args.engine, checkpoint=args.checkpoint, data=args.data, limit=args.limit,
                          backend=args.backend)
    threshold = args.threshold if args.threshold is not None else MIN_AGREEMENT[precision]
    used = f"{name} {precision}"
    ok = result.agreement >= threshold
    if args.json:
        print(json.dumps({"engine": args.engine, "backend": used, "threshold": threshold, "ok": ok,
                          **result.to_dict()}, indent=1))
    else:
        print(f"{args.engine} ({used}) vs torch fp32: {result.summary()}")
        print(f"{'PASS' if ok else 'FAIL'}: agreement {100 * result.agreement:.2f}% "
              f"{'>=' if ok else '<'} {100 * threshold:.1f}%")
    return 0 if ok else 2



def cmd_bench(args: argparse.Namespace) -> int:
    import platform
    from pathlib import Path

    import torch

    from engine.bench import PIPELINE_HEADER, pipeline
    from streampose.info import cpu

    batches, streams = _counts("--batches", args.batches), _counts("--streams", args.streams)
    jobs = _counts("--jobs", args.jobs, minimum=0) if args.jobs is not None else None
    if args.soak is not None:
        return _soak(args, batches)
    if args.e2e and not Path(args.e2e).is_file():
        raise ValueError(f"--e2e {args.e2e}: no such clip")
    names = [v for v in args.backends.split(",") if v] or None
    model_names = [v for v in args.models.split(",") if v]
    machine = cpu()
    print(f"{machine['model']}, {machine['cores']} cores, torch {torch.__version__}, {torch.get_num_threads()} threads")
    report: dict[str, object] = {"machine": machine, "python": platform.python_version()}
    if not args.e2e or args.model_only:
        report.update(_bench_model_only(model_names, batches, args.cache, names, args.rounds, jobs or [1]))
    if args.e2e:
        detectors = [m for m in model_names if m in models.PRESETS and models.PRESETS[m].joints.name == PERSON.name]
        pose_models = [m for m in model_names if m not in detectors]
        if detectors:
            print(f"--e2e: {', '.join(detectors)} is a person detector, not a pose model: the pose models run the "
                  "clip (and the default detector finds the person)")
        if not pose_models:
            raise ValueError("--e2e needs a pose model: name one with --models (e.g. --models hg2-lite)")
        print(PIPELINE_HEADER)
        rows = pipeline(pose_models, args.e2e, batches, cache=args.cache, names=names, rounds=args.rounds,
                        live=args.live, streams=streams, jobs=jobs, previews=_rates(args.previews))
        print("ratio: end-to-end fps / model-only fps at the same batch, alternating rounds; latency: capture to "
              "publish; CPU-ms: thread CPU time per delivered frame")
        report["pipeline"] = [r.to_dict() for r in rows]
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


def _rates(text: str) -> list[float]:
    try:
        rates = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        rates = []
    if not rates or not all(0 <= r <= 1000 for r in rates):
        raise ValueError(f"--previews {text}: expected comma-separated rates from 0 to 1000, e.g. 0,10")
    return rates


def _soak(args: argparse.Namespace, batches: list[int]) -> int:
    """`bench --soak N`: the runtime's long-run check (streampose.soak)."""
    from streampose.soak import soak, write

    if args.soak < 1:
        raise ValueError(f"--soak must be a positive number of frames, got {args.soak}")
    backend = next((b for b in args.backends.split(",") if b), "auto")
    report = soak(args.soak_clip, args.soak, model=args.models.split(",")[0], backend=backend, max_batch=max(batches))
    for path in write(report, args.soak_out):
        print(f"soak: wrote {path}")
    print("soak: " + json.dumps(report.summary()))
    return 0


def _counts(flag: str, text: str, minimum: int = 1) -> list[int]:
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise ValueError(f"{flag} must be comma-separated integers, got {text!r}") from None
    if any(v < minimum for v in values):
        raise ValueError(f"{flag} must be integers >= {minimum}, got {text!r}")
    return values


def _bench_model_only(model_names: list[str], batches: list[int], cache: str, names: list[str] | None,
                      rounds: int, jobs: list[int]) -> dict[str, object]:
    from engine.bench import HEADER, model_only, peak_probe, peaks_of

    probe = peak_probe()
    peaks = peaks_of(probe)
    for precision, impls in probe.items():
        print(f"peak {precision}: {peaks[precision]:.0f} GFLOP/s  (GEMM probe: "
              + ", ".join(f"{k} {v:.0f}" for k, v in impls.items()) + ")")
    print(HEADER)
    rows = model_only(model_names, batches, cache=cache, names=names, peaks=peaks, rounds=rounds, jobs=jobs)
    if not rows:
        raise ValueError("no backend could be benchmarked")
    best = max(rows, key=lambda r: r.share_of_peak or 0.0)
    if best.share_of_peak is not None:
        print(f"best share of peak: {100 * best.share_of_peak:.0f}% ({best.model} {best.backend} {best.precision} "
              f"batch {best.batch})")
    print("GFLOP/s counts direct-convolution work (2 x conv MACs per image); above 100% of peak an engine does "
          "fewer operations than that (e.g. Winograd 3x3 convolutions)")
    return {"peak_probe_gflops": probe, "peaks_gflops": peaks, "rows": [r.to_dict() for r in rows]}
