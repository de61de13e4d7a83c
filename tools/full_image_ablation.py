"""Ways of finding the person on whole images, scored on the same images, each against the first with the
paired difference: what an ablation row of the README says, with its interval.

    python tools/full_image_ablation.py --variants track+detect:0 track+detect:1
    python tools/full_image_ablation.py --variants detect:0 auto:0 auto:1 --model hg2
    python tools/full_image_ablation.py --variants auto --model hg2-lite runs/new/last.pt   # new weights, paired
    python tools/full_image_ablation.py --variants auto --detector person-det runs/det/last.pt   # a new detector
    python tools/full_image_ablation.py --variants given auto --model hg2-lite runs/new/last.pt   # both protocols

A variant is CROP[:CANDIDATES], as `streampose eval --full-image --crop CROP --candidates N` takes them (auto: the
detector, candidates and second looks, as `streampose run` on images; track+detect: a video's first frame, the
tracker's detection and one look; detect: auto with one look; center: the paper's centred crop), or `given`: the
crop from the labels, as `streampose eval` scores with the crop given (no detector). Prints PCK@0.2
limbs of each on LSPET 8501-9000 and LSP 901-1000 and each variant's difference from the first with its 95 %
paired bootstrap interval (`train.evaluate.paired_bootstrap`); with several `--model`s, every model in every
variant, each against the first model's first variant; with several `--detector`s, the same for each detector,
against the first detector's first row. Torch fp32 by default, as the README's figures.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

from streampose import models
from streampose.api import PoseEstimator
from streampose.checkpoint import CheckpointError
from streampose.crop import CANDIDATES, KINDS, parse_crop
from streampose.detector import open_detector
from train.datasets import open_dataset
from train.evaluate import lsp_pck, paired_bootstrap, predict, predict_full_image

DATA = Path(os.environ.get("STREAMPOSE_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
SPLITS = ("lspet@8501-9000", "lsp@901-1000")
GIVEN = "given"  # the variant that is no person finding: the labels' crop, the crop-given protocol


def variant(text: str) -> tuple[str, int]:
    crop, _, n = text.partition(":")
    if crop == GIVEN and not n:
        return crop, 0
    if crop not in KINDS or crop == "track" or (n and not n.isdigit()):
        raise argparse.ArgumentTypeError(f"a variant is given, or CROP[:CANDIDATES] with CROP one of auto, "
                                         f"track+detect, detect, center, got {text!r}")
    return crop, int(n) if n else CANDIDATES


def first_images(split: str, limit: int) -> str:
    """`name@FIRST-LAST` cut to its first `limit` images (0: all)."""
    name, first, last = split.replace("-", "@").split("@")
    return f"{name}@{first}-{min(int(last), int(first) + limit - 1)}" if limit > 0 else split


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", nargs="+", type=variant, required=True, metavar="CROP[:N]")
    ap.add_argument("--model", nargs="+", default=[models.DEFAULT],
                    help="pose models, names or checkpoints (default: %(default)s)")
    ap.add_argument("--detector", nargs="+", default=[models.DETECTOR],
                    help="person detectors, names or checkpoints (default: %(default)s)")
    ap.add_argument("--backend", default="torch", help="(default: %(default)s)")
    ap.add_argument("--rounds", type=int, default=2000, help="bootstrap resamplings (default: %(default)s)")
    ap.add_argument("--limit", type=int, default=0, help="only the first N images of each split (quick checks)")
    args = ap.parse_args(argv)
    if not (DATA / "lspet").is_dir() or not (DATA / "lsp").is_dir():
        print(f"full_image_ablation: {DATA}/lspet and lsp not found; set STREAMPOSE_DATA", file=sys.stderr)
        return 1
    names = [" ".join([*([d] if len(args.detector) > 1 else []), *([m] if len(args.model) > 1 else []),
                       c if c == GIVEN else f"{c}:{n}"])
             for d in args.detector for m in args.model for c, n in args.variants]
    with contextlib.ExitStack() as stack:
        dets = [stack.enter_context(open_detector(d, backend=args.backend)) for d in args.detector]
        estimators = [stack.enter_context(PoseEstimator(m, backend=args.backend)) for m in args.model]
        used = f"{estimators[0].backend.info.name} {estimators[0].backend.info.precision}"
        for split in (first_images(s, args.limit) for s in SPLITS):
            data = open_dataset(f"lsp:{DATA / split}")
            # the labels' crop finds no one: once per model, whichever detector its row is under
            given = ({id(e): predict(e.backend, data, progress=False) for e in estimators}
                     if any(c == GIVEN for c, _ in args.variants) else {})
            preds = []
            for det in dets:
                for est, (crop, n) in ((e, v) for e in estimators for v in args.variants):
                    if crop == GIVEN:
                        preds.append(given[id(est)])
                        continue
                    policy = parse_crop(crop).policy(True, det, refine=crop != "detect", candidates=n)
                    preds.append(predict_full_image(est, data, policy=policy)[0])
            print(f"{', '.join(args.model)} with {', '.join(args.detector)} ({used}) on {split}, PCK@0.2 limbs of "
                  f"the whole image{' (given: the crop from the labels)' if given else ''}")
            first = preds[0]
            for name, pred in zip(names, preds, strict=True):
                line = f"  {name:<{max(16, *map(len, names))}} {100 * lsp_pck(pred, data).limbs:5.1f} %"
                if pred is not first:
                    d, lo, hi = paired_bootstrap(first, pred, data, args.rounds)
                    line += f"   {100 * d:+.1f} ({100 * lo:+.1f}..{100 * hi:+.1f}, paired 95 %)"
                print(line, flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (CheckpointError, ValueError) as e:  # a model or detector that cannot be opened: say which, and stop
        print(f"full_image_ablation: {e}", file=sys.stderr)
        sys.exit(1)
