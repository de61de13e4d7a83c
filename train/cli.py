"""`streampose train` and `streampose eval`, registered into the main command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streampose import argtypes as at
from streampose import models
from streampose.crop import CANDIDATES

if TYPE_CHECKING:
    from streampose.detector import PersonDetector
    from train.datasets import Dataset


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    t = sub.add_parser(
        "train", help="train a stacked hourglass on pose data",
        description="Train a named model configuration. `--data lsp:PATH` alone trains on LSPET images "
                    "1-8500 and validates each epoch on 8501-9000. Ctrl-C saves a checkpoint; --resume continues "
                    "exactly. Writes OUT/last.pt, OUT/log.json and OUT/curve.png.")
    t.add_argument("--data", required=True, action="append",
                   help="FORMAT:PATH[@FIRST-LAST], e.g. lsp:../shared/data/lspet; repeat to train on several; or "
                        "pack:FILE, the crops of tools/pack_crops.py (its val parts validate)")
    t.add_argument("--val", default=None, action="append",
                   help="validation set, repeatable, each reported (default for lsp: images 8501-9000)")
    t.add_argument("--config", default=models.DEFAULT, choices=list(models.PRESETS),
                   help=f"model (default: %(default)s; {models.DETECTOR} trains the person detector on whole frames "
                        "composed of the same pose data)")
    t.add_argument("--out", default=None, help="run folder (default: runs/CONFIG)")
    t.add_argument("--epochs", type=int, default=30)
    t.add_argument("--batch", type=int, default=16)
    t.add_argument("--lr", type=float, default=2.5e-4, help="learning rate (default: the paper's %(default)s)")
    t.add_argument("--optimizer", default="rmsprop", choices=["rmsprop", "adam", "sgd"])
    t.add_argument("--lr-drops", default="", help="comma-separated epochs where the rate drops 10x, e.g. 30,36")
    t.add_argument("--checkpoint-every", type=int, default=500, help="steps between checkpoints")
    t.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (0: all epochs)")
    t.add_argument("--limit", type=int, default=0, help="use only the first N training images (quick runs)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--no-bf16", action="store_true", help="train in fp32 (default: bf16 autocast)")
    t.add_argument("--flip-val", action="store_true", help="flip test during validation")
    t.add_argument("--cache-dir", default="runs/cache", help="where decoded crops are cached")
    t.add_argument("--resume", action="store_true", help="continue OUT/last.pt")
    t.add_argument("--input-size", type=int, default=0,
                   help="train at this input size instead of the config's (e.g. 128 for cheap early epochs)")
    t.add_argument("--init", default="", metavar="CKPT",
                   help="start from this checkpoint's weights (same config; the input size may differ)")
    t.add_argument("--device", default="auto", help="cpu, cuda or cuda:N (default: auto, the GPU where there is one)")
    t.add_argument("--workers", type=int, default=-1,
                   help="processes making detector frames (default: none on CPU, up to 8 beside a GPU); pose "
                        "batches are made on the training device")
    t.add_argument("--augment", default="runtime", choices=["runtime", "small", "paper"],
                   help="pose crops: runtime (scale 0.7-1.4, centre shifts up to 15 %%, as the detector and tracker "
                        "crop), small (the same, a sixth of them seen at 32-128 px as small people far from the "
                        "camera are) or paper (centred on the labels, scale 0.75-1.25); default %(default)s")
    t.add_argument("--swap-after", type=int, default=-1, metavar="EPOCH",
                   help="from this epoch, train each sample on its labels or their left/right mirror, whichever the "
                        "model fits better by --swap-margin (default: never)")
    t.add_argument("--swap-margin", type=float, default=0.25, help="(default: %(default)s)")
    t.add_argument("--time-budget", type=float, default=0, metavar="SECONDS",
                   help="fit the schedule (epochs, drops) into this many seconds of training, timed over the first "
                        "steps (default: run the epochs given)")
    t.add_argument("--val-every", type=int, default=1, metavar="N", help="validate every N epochs and after the last")
    t.add_argument("--average-from", type=int, default=-1, metavar="EPOCH",
                   help="from this epoch (0-based), average the weights at each epoch's end (SWA): validation and "
                        "the saved weights are the average, best with a constant --lr (default: -1, never)")
    t.add_argument("--teacher", default="", metavar="MODEL",
                   help="a trained pose model (name, e.g. hg2, or checkpoint) whose heatmaps of each training crop "
                        "the model also learns (knowledge distillation; default: none)")
    t.add_argument("--distill", type=float, default=0.5, metavar="W",
                   help="with --teacher: loss = (1 - W) x the labels' + W x the teacher's (default: %(default)s)")
    t.add_argument("--teacher-flip", action="store_true",
                   help="with --teacher: learn the teacher's flip-test maps (a better teacher, a second pass of it)")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("eval", help="PCK / PCKh of a model on a validation set, crop given and full image; "
                                    "a detector's recall",
                       description="Per-joint PCK@0.2 (torso, LSP protocol), or PCKh@0.5 where the annotations carry "
                                   "head sizes (MPII), of a model name or checkpoint. `--full-image` also scores what "
                                   "the tool does without labels: the person found by the detector in each whole "
                                   "image (no person: every joint missed), beside the crop-given protocol. A person "
                                   "detector (e.g. person-det) is scored by top-1 recall at IoU 0.5 on the images "
                                   "and on zoomed-out composites of several small people.")
    e.add_argument("model", help="model name, checkpoint path, or engine file (.onnx, .xml, .plan, .ep)")
    e.add_argument("--backend", default=None,
                   help="backend for an engine (default: auto) or a checkpoint (default: torch)")
    e.add_argument("--data", required=True, help="FORMAT:PATH[@FIRST-LAST]; lsp:PATH alone means images 8501-9000")
    e.add_argument("--flip", action="store_true", help="average with the mirrored crop (flip test)")
    e.add_argument("--limit", type=int, default=0, help="evaluate only the first N annotations")
    e.add_argument("--jitter", type=float, default=0.0, metavar="J",
                   help="also score crops moved as a detector or tracker misses them: the centre by up to J of the "
                        "crop's side, the side by up to 1+2J (seeded; e.g. 0.15)")
    e.add_argument("--small", type=at.positive_int, default=0, metavar="PX",
                   help="also score each person seen small, far from the camera: the image shrunk so that the "
                        "person's crop is PX pixels wide and enlarged back (e.g. 64: a person about 50 px tall)")
    e.add_argument("--full-image", action="store_true",
                   help="also find the person in each whole image as `streampose run` does, and score that")
    e.add_argument("--detector", default=models.DETECTOR,
                   help="person detector for --full-image (default: %(default)s)")
    e.add_argument("--crop", default="auto", choices=("auto", "track+detect", "detect", "center"),
                   help="how --full-image finds the person in each image: auto (as `streampose run` on images: "
                        "the detector, candidates, second looks), track+detect (as on a video's first frame: the "
                        "tracker's detection and one look), detect (auto's, with --no-refine: one look), center (the "
                        "paper's centred crop) (default: %(default)s)")
    e.add_argument("--candidates", type=at.count, default=CANDIDATES,
                   help="for --full-image: detections posed beyond the person, the most plausible kept "
                        "(default: %(default)s)")
    e.add_argument("--composites", type=int, default=200,
                   help="detectors: zoomed-out composite frames to score (default: %(default)s; 0: none)")
    e.add_argument("--json", default=None, help="also write the report to this JSON file")
    e.set_defaults(func=cmd_eval)


def _lr_drops(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--lr-drops must be comma-separated epochs, got {text!r}") from None


def cmd_train(args: argparse.Namespace) -> int:
    from train.config import TrainConfig
    from train.datasets import concat, default_split, open_dataset
    from train.loop import Trainer
    from train.pack import Pack, load_pack

    packs = [d for d in args.data if d.startswith("pack:")]
    train_set: Dataset | Pack
    if packs:
        if len(args.data) > 1:
            raise ValueError("--data pack:FILE trains on the pack alone; pack every set into it (tools/pack_crops.py)")
        train_set = load_pack(packs[0][len("pack:"):])
        val_sets = ([open_dataset(v) for v in args.val] if args.val else
                    train_set.dataset("val", Path(args.cache_dir) / "pack-val"))
    else:
        splits = [default_split(spec) for spec in args.data]
        train_set = concat([open_dataset(t) for t, _ in splits])
        if args.limit:
            train_set = train_set.head(args.limit)
        val_specs = args.val or [v for _, v in splits if v]
        val_sets = [open_dataset(v) for v in val_specs]
    cfg = TrainConfig(
        model=args.config, out=args.out or f"runs/{args.config}", epochs=args.epochs, batch=args.batch, lr=args.lr,
        optimizer=args.optimizer, lr_drops=_lr_drops(args.lr_drops), checkpoint_every=args.checkpoint_every,
        max_steps=args.max_steps, seed=args.seed, bf16=not args.no_bf16, flip_val=args.flip_val,
        cache_dir=args.cache_dir, input_size=args.input_size, init=args.init,
        device=args.device, workers=args.workers, augment=args.augment, swap_after=args.swap_after,
        swap_margin=args.swap_margin, time_budget=args.time_budget, val_every=args.val_every,
        average_from=args.average_from, teacher=args.teacher, distill=args.distill,
        teacher_flip=args.teacher_flip)
    trainer = Trainer(cfg, train_set, val_sets, resume=args.resume)
    path = trainer.run()
    print(f"trained {trainer.step} steps: {path}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    import streampose
    from streampose.backends import create, is_engine
    from streampose.checkpoint import Checkpoint, check_joints
    from streampose.crop import parse_crop
    from streampose.detector import PersonDetector, open_detector
    from streampose.joints import PERSON
    from train.datasets import default_split, open_dataset
    from train.evaluate import score, score_full_image, side_by_side

    spec = args.data
    if spec.startswith("lsp:") and "@" not in spec:
        spec = default_split(spec)[1] or spec
    data = open_dataset(spec)
    if args.limit:
        data = data.head(args.limit)
    model = args.model if is_engine(args.model) else streampose.load_model(args.model)
    if isinstance(model, Checkpoint) and model.joints.name != PERSON.name:
        check_joints(model, data.joints, args.model)
    with create(args.backend or ("auto" if is_engine(args.model) else "torch"), model) as backend:
        used = f"{backend.info.name} {backend.info.precision}"
        if backend.info.joints.name == PERSON.name:
            return _eval_detector(args, PersonDetector(backend), data, used)
        if backend.info.joints.name != data.joints.name:
            raise ValueError(f"{args.model} predicts {backend.info.joints.name} but {spec} is {data.joints.name}")
        report = score(backend, data, flip=args.flip)
        reports = {"crop given": report}
        small_key = f"small ({args.small} px)"
        if args.jitter:
            reports["crop jittered"] = score(backend, data, flip=args.flip, jitter=args.jitter)
        if args.small:
            reports[small_key] = score(backend, data, flip=args.flip, small=args.small)
        if args.full_image:
            with open_detector(args.detector, backend=args.backend or "auto") as detector:
                estimator = streampose.PoseEstimator(backend=backend, flip=args.flip, detector=detector)
                policy = parse_crop(args.crop).policy(True, detector, refine=args.crop != "detect",
                                                      candidates=args.candidates)
                reports["full image"] = score_full_image(estimator, data, policy=policy)
                used += f"; detector {args.detector} ({detector.backend.info.name} {detector.backend.info.precision})"
    print(f"{args.model} ({used}) on {data.name}")
    print(side_by_side(reports) if len(reports) > 1 else report.table())
    if args.json:
        result = {"model": args.model, "backend": used, "data": data.name, **report.to_dict()}
        if args.full_image:
            result["full_image"] = reports["full image"].to_dict()
        if args.jitter:
            result["jittered"] = reports["crop jittered"].to_dict()
        if args.small:
            result["small"] = reports[small_key].to_dict()
        _write_json(args.json, result)
    return 0


def _eval_detector(args: argparse.Namespace, detector: PersonDetector, data: Dataset, used: str) -> int:
    from train.detect_eval import composites, top1

    rep = top1(detector, data)
    print(f"{args.model} ({used})")
    print(rep.line())
    result = {"model": args.model, "backend": used, **rep.to_dict()}
    if args.composites:
        comp = composites(detector, data, frames=args.composites)
        print(comp.line())
        result["composites"] = comp.to_dict()
    if args.json:
        _write_json(args.json, result)
    return 0


def _write_json(path: str, result: dict[str, Any]) -> None:
    Path(path).write_text(json.dumps(result, indent=1))
    print(f"wrote {path}", file=sys.stderr)
