"""Turn a finished training run into a shipped model: fp16 weights plus a model card.

    python -m train.ship runs/hg2-lite --name hg2-lite --command "streampose train ..."
    python -m train.ship --revalidate hg2      # the card's figures again, after a change to the decoding

Writes streampose/models/NAME.pt (no optimizer state, fp16) and NAME.json: the config, joint set,
data, steps, training time, validation metrics (with and without flip test, measured here on the
shipped fp16 weights, on the real images where the run validated on a pack) and the commands that produced it.
Both files are replaced only once everything is measured: a failure leaves the shipped model as it was.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from streampose import checkpoint as ck
from streampose import models
from streampose.backends import create
from streampose.detector import PersonDetector
from streampose.info import cpu
from streampose.model import conv_macs, count_parameters
from train.datasets import Dataset, open_dataset
from train.detect_eval import composites, top1
from train.evaluate import score
from train.pack import PACKED


def ship(run: Path, name: str, commands: list[str], val_spec: str | None = None, dest: Path = models.HERE,
         machine: str | None = None, input_size: int = 0) -> dict[str, Any]:
    """`input_size`: ship the weights to run at this size instead of the one they trained at (the network is
    fully convolutional; the card's figures are measured at the shipped size)."""
    src = ck.load(run / "last.pt")
    if input_size:
        src = dataclasses.replace(src, config=dataclasses.replace(src.config, input_size=input_size))
    if not (val_spec or src.metadata.get("validation")):
        raise ValueError(f"{run} validated on nothing: name the validation set with --val FORMAT:PATH@RANGE")
    val_spec = val_spec or " + ".join(v.removesuffix(PACKED) for v in src.metadata["validation"].split(" + "))
    vals = [open_dataset(v) for v in val_spec.split(" + ")]
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=dest))
    try:
        weights = ck.save(ck.Checkpoint(src.config, src.joints, src.normalization, src.metadata, src.state_dict),
                          staging / f"{name}.pt", half=True)
        card = _card(src, ck.load(weights), weights, name, commands, vals, val_spec, machine)
        (staging / f"{name}.json").write_text(json.dumps(card, indent=1) + "\n")
        for suffix in (".pt", ".json"):
            os.replace(staging / f"{name}{suffix}", dest / f"{name}{suffix}")
    finally:
        for leftover in staging.iterdir():
            leftover.unlink()
        staging.rmdir()
    return card


def _card(src: ck.Checkpoint, shipped: ck.Checkpoint, weights: Path, name: str, commands: list[str],
          vals: list[Dataset], val_spec: str, machine: str | None) -> dict[str, Any]:
    """The model card, with the validation figures measured on the shipped (fp16) weights."""
    return {
        "name": name,
        "summary": models.PRESETS[name].summary if name in models.PRESETS else "",
        "config": src.config.to_dict(),
        "joints": src.joints.name,
        "normalization": src.normalization.to_dict(),
        "parameters": count_parameters(shipped.build()),
        "gmac": round(conv_macs(src.config) / 1e9, 3),
        "weights": {"file": weights.name, "dtype": _dtypes(shipped), "bytes": weights.stat().st_size},
        "data": {"train": src.metadata["data"], "validation": val_spec,
                 "licence": "LSP (Johnson & Everingham 2010) and LSP-extended (2011), Flickr images: research use "
                            "only"},
        "training": _training(src.metadata, machine or src.metadata.get("machine")
                              or f"{cpu()['model']}, {cpu()['cores']} cores, torch {torch.__version__}",
                              src.extra.get("log", [])),
        "validation": _validation(shipped, vals),
        "validated_with": _validated_with(),
        "commands": commands,
    }


def _validation(shipped: ck.Checkpoint, vals: list[Dataset]) -> dict[str, Any]:
    """A card's validation block, measured on the shipped weights: a detector's recall on whole images and on
    composites of small people; a pose model's PCK, the first set as "plain" / "flip", each further one under its
    name."""
    metrics: dict[str, Any] = {}
    with create("torch", shipped) as backend:
        if shipped.config.head == "centernet":
            detector = PersonDetector(backend)
            for val in vals:
                metrics[val.name] = {"top1": top1(detector, val).to_dict(),
                                     "composites": composites(detector, val).to_dict()}
        else:
            for i, val in enumerate(vals):
                reps = {("flip" if f else "plain"): score(backend, val, flip=f).to_dict() for f in (False, True)}
                if i == 0:
                    metrics.update(reps)
                else:
                    metrics[val.name] = reps
    return metrics


def _validated_with() -> dict[str, Any]:
    """What the card's figures depend on beyond the weights: the decoding (`decode.BLUR`) and the version."""
    from streampose import __version__
    from streampose.decode import BLUR

    return {"streampose": __version__, "decode_blur": BLUR}


def revalidate(name: str, dest: Path = models.HERE) -> dict[str, Any]:
    """Measure a shipped model's card figures again, on its own validation sets, after what they depend on beyond
    the weights changed (the decoding); the rest of the card (training, commands, engines) is kept."""
    path = dest / f"{name}.json"
    card: dict[str, Any] = json.loads(path.read_text())
    shipped = ck.load(dest / card["weights"]["file"])
    vals = [open_dataset(v) for v in card["data"]["validation"].split(" + ")]
    card = {**card, "validation": _validation(shipped, vals), "validated_with": _validated_with()}
    staged = path.with_suffix(".json.tmp")
    staged.write_text(json.dumps(card, indent=1) + "\n")
    os.replace(staged, path)
    return card


def _dtypes(shipped: ck.Checkpoint) -> str:
    """float16, naming the tensors kept in float32 because a value of theirs is beyond fp16's range."""
    wide = [k for k, v in shipped.state_dict.items() if v.dtype == torch.float32]
    return "float16" + (f"; float32: {', '.join(wide)} (beyond fp16's range)" if wide else "")


def compact(run: Path, dest: Path) -> Path:
    """The run's weights (fp16), metadata and log without the optimizer state: small enough to come back from
    a GPU machine (at most 16 MB a file), then shipped here from a folder holding it as `last.pt`."""
    c = ck.load(run / "last.pt")
    extra: dict[str, Any] = {k: c.extra[k] for k in ("step", "log", "seconds") if k in c.extra}
    return ck.save(ck.Checkpoint(c.config, c.joints, c.normalization, c.metadata, c.state_dict, extra), dest,
                   half=True)


def _earlier_training(init: str) -> dict[str, Any] | None:
    """Where the weights an --init run started from came from: the card beside a shipped model (read before
    its weights are replaced), or the metadata of a training checkpoint (an earlier phase, e.g. at 128 px),
    followed back through the phases before it."""
    if not init or not Path(init).is_file():
        return None
    card = Path(init).with_suffix(".json")
    if card.is_file():
        earlier: dict[str, Any] = json.loads(card.read_text())
        return {"weights": init, **earlier["training"], "commands": earlier.get("commands", [])}
    meta = ck.load(init).metadata
    return {"weights": init, **_training(meta, meta.get("machine"))}


def _training(meta: dict[str, Any], machine: str | None, log: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A card's training block from a training checkpoint's metadata (and its log: the samples trained on
    mirrored labels, per epoch), with the phases before it."""
    history = _earlier_training(meta["train_config"].get("init", ""))
    swaps = [e for e in log or [] if e.get("kind") == "swap"]
    return {"steps": meta["steps"], "epochs": meta["epochs"], "seconds": meta["training_seconds"],
            "config": meta["train_config"], "augmentation": meta["augmentation"], "machine": machine,
            **({"mirrored_labels": {"per_epoch": {e["epoch"]: e["swapped"] for e in swaps},
                                    "samples_per_epoch": swaps[-1]["samples"],
                                    "images": len({i for e in swaps for i in e["images"]})}} if swaps else {}),
            **({"started_from": history} if history else {})}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, nargs="?", help="training run folder holding last.pt")
    ap.add_argument("--revalidate", metavar="NAME", default=None,
                    help="instead of shipping, measure the shipped model NAME's card figures again (after a change "
                         "to the decoding), keeping the rest of its card")
    ap.add_argument("--name", default=None, help="model name, e.g. hg2-lite")
    ap.add_argument("--compact", type=Path, default=None, metavar="FILE",
                    help="instead of shipping, write the run's fp16 weights, metadata and log (no optimizer) to FILE")
    ap.add_argument("--val", default=None, help="validation set spec (default: the one the run validated on)")
    ap.add_argument("--command", action="append", default=[], help="a command that produced the run (repeatable)")
    ap.add_argument("--input-size", type=int, default=0,
                    help="run the shipped model at this input size (default: the size it trained at)")
    ap.add_argument("--machine", default=None,
                    help="where it trained (default: as recorded in the checkpoint, else this machine)")
    args = ap.parse_args()
    if args.revalidate:
        if not (models.HERE / f"{args.revalidate}.json").is_file():
            ap.error(f"--revalidate {args.revalidate}: no shipped model card of that name; one of "
                     f"{', '.join(models.shipped())}")
        _report(revalidate(args.revalidate))
        return
    if args.run is None:
        ap.error("name a training run folder (or --revalidate NAME)")
    if args.compact:
        print(f"wrote {compact(args.run, args.compact)}")
        return
    if not args.name:
        ap.error("--name is required to ship")
    _report(ship(args.run, args.name, args.command, args.val, machine=args.machine, input_size=args.input_size))


def _report(card: dict[str, Any]) -> None:
    for kind, rep in card["validation"].items():
        if "top1" in rep:
            print(f"{kind}: top-1 recall {100 * rep['top1']['recall']:.1f} %, composites recall "
                  f"{100 * rep['composites']['recall']:.1f} %, {rep['composites']['false_positives']:.2f} FP/frame")
        else:  # "plain" and "flip" of the first set, then each further set's pair
            for name, r in ({kind: rep} if "metric" in rep else {f"{kind} {k}": v for k, v in rep.items()}).items():
                print(f"{name:>5}: {r['metric']} limbs {100 * r['limbs']:.1f}  all {100 * r['all']:.1f}")


if __name__ == "__main__":
    main()
