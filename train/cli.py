"""`streampose train` and `streampose eval`, registered into the main command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from streampose import models


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    t = sub.add_parser(
        "train", help="train a stacked hourglass on pose data",
        description="Train a named model configuration. `--data lsp:PATH` alone trains on LSPET images "
                    "1-8500 and validates each epoch on 8501-9000. Ctrl-C saves a checkpoint; --resume continues "
                    "exactly. Writes OUT/last.pt, OUT/log.json and OUT/curve.png.")
    t.add_argument("--data", required=True, help="FORMAT:PATH[@FIRST-LAST], e.g. lsp:../shared/data/lspet")
    t.add_argument("--val", default=None, help="validation set (default for lsp: images 8501-9000)")
    t.add_argument("--config", default=models.DEFAULT, choices=list(models.PRESETS),
                   help="model (default: %(default)s)")
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
                   help="processes making samples (default: none on CPU, up to 8 beside a GPU)")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("eval", help="PCK / PCKh of a model on a validation set",
                       description="Per-joint PCK@0.2 (torso, LSP protocol), or PCKh@0.5 where the annotations carry "
                                   "head sizes (MPII), of a model name or checkpoint.")
    e.add_argument("model", help="model name, checkpoint path, or engine file (.onnx, .xml, .plan, .ep)")
    e.add_argument("--backend", default=None,
                   help="backend for an engine (default: auto) or a checkpoint (default: torch)")
    e.add_argument("--data", required=True, help="FORMAT:PATH[@FIRST-LAST]; lsp:PATH alone means images 8501-9000")
    e.add_argument("--flip", action="store_true", help="average with the mirrored crop (flip test)")
    e.add_argument("--limit", type=int, default=0, help="evaluate only the first N annotations")
    e.add_argument("--json", default=None, help="also write the report to this JSON file")
    e.set_defaults(func=cmd_eval)


def _lr_drops(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--lr-drops must be comma-separated epochs, got {text!r}") from None


def cmd_train(args: argparse.Namespace) -> int:
    from train.datasets import default_split, open_dataset
    from train.loop import TrainConfig, Trainer

    train_spec, val_spec = default_split(args.data)
    train_set = open_dataset(train_spec)
    if args.limit:
        train_set = train_set.head(args.limit)
    val_spec = args.val or val_spec
    val_set = open_dataset(val_spec) if val_spec else None
    cfg = TrainConfig(
        model=args.config, out=args.out or f"runs/{args.config}", epochs=args.epochs, batch=args.batch, lr=args.lr,
        optimizer=args.optimizer, lr_drops=_lr_drops(args.lr_drops), checkpoint_every=args.checkpoint_every,
        max_steps=args.max_steps, seed=args.seed, bf16=not args.no_bf16, flip_val=args.flip_val,
        cache_dir=args.cache_dir, input_size=args.input_size, init=args.init,
        device=args.device, workers=args.workers)
    trainer = Trainer(cfg, train_set, val_set, resume=args.resume)
    path = trainer.run()
    print(f"trained {trainer.step} steps: {path}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    import streampose
    from streampose.backends import create
    from train.datasets import default_split, open_dataset
    from train.evaluate import score

    spec = args.data
    if spec.startswith("lsp:") and "@" not in spec:
        spec = default_split(spec)[1] or spec
    data = open_dataset(spec)
    if args.limit:
        data = data.head(args.limit)
    from streampose.backends import is_engine

    model = args.model if is_engine(args.model) else streampose.load_model(args.model, joints=data.joints)
    with create(args.backend or ("auto" if is_engine(args.model) else "torch"), model) as backend:
        if backend.info.joints.name != data.joints.name:
            raise ValueError(f"{args.model} predicts {backend.info.joints.name} but {spec} is {data.joints.name}")
        report = score(backend, data, flip=args.flip)
        used = f"{backend.info.name} {backend.info.precision}"
    print(f"{args.model} ({used}) on {data.name}")
    print(report.table())
    if args.json:
        result = {"model": args.model, "backend": used, "data": data.name, **report.to_dict()}
        Path(args.json).write_text(json.dumps(result, indent=1))
        print(f"wrote {args.json}", file=sys.stderr)
    return 0
