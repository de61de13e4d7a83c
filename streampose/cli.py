"""The `streampose` command line: a thin layer over the library API."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence

from tqdm import tqdm

import streampose
from streampose import models
from streampose.backends import NAMES

PLANNED = {
    "listen": "print or record the poses a running `streampose run` publishes",
}


class UserError(Exception):
    """Reported as one line on stderr with exit code 1."""


def parse_box(text: str) -> tuple[float, float, float, float]:
    try:
        x, y, w, h = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"box must be x,y,w,h in pixels, got {text!r}") from None
    if w <= 0 or h <= 0:
        raise argparse.ArgumentTypeError(f"box width and height must be positive, got {text!r}")
    return x, y, w, h


def cmd_run(args: argparse.Namespace) -> int:
    from streampose.backends import is_engine
    from streampose.sources import iter_frames

    model = args.model if is_engine(args.model) else streampose.load_model(args.model, pretrained=not args.untrained)
    if args.untrained:
        print(f"streampose: warning: {args.model} has untrained weights: the keypoints are meaningless",
              file=sys.stderr)
    count = 0
    with streampose.PoseEstimator(model, backend=args.backend, device=args.device) as est:
        frames = iter_frames(args.source)
        for frame in tqdm(frames, desc="frames", unit="f", disable=None, leave=False):
            pose = est(frame.image, box=args.box)
            if args.json:
                print(json.dumps({"frame": frame.index, "pts": round(frame.pts, 6), "score": round(pose.score, 4),
                                  "joints": est.joints.name, "kp": pose.as_dict()}))
            else:
                print(f"frame {frame.index}  pts {frame.pts:.3f}s  score {pose.score:.3f}  "
                      f"crop {', '.join(f'{v:.0f}' for v in pose.box)}")
                for name, (x, y, c) in pose.as_dict().items():
                    print(f"  {name:<12}{x:9.1f}{y:9.1f}   {c:.2f}")
            count += 1
            if args.max_frames and count >= args.max_frames:
                break
    if count == 0:
        raise UserError(f"{args.source}: no frames could be read")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from streampose.info import format_report, report

    r = report()
    print(json.dumps(r, indent=2) if args.json else format_report(r))
    return 0


def planned(name: str) -> Callable[[argparse.Namespace], int]:
    def run(_: argparse.Namespace) -> int:
        raise UserError(f"`streampose {name}` is not implemented yet in this version")

    return run


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="streampose",
        description="Real-time human pose estimation with stacked hourglass networks.",
        epilog="Run `streampose COMMAND --help` for a command's options.",
    )
    p.add_argument("--version", action="version", version=f"streampose {streampose.__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    r = sub.add_parser("run", help="estimate poses in an image, image folder or video file",
                       description="Estimate the pose of the person in each frame and print the keypoints "
                                   "(frame pixels, with per-joint confidence).")
    r.add_argument("source", help="image file, folder of images, or video file")
    r.add_argument("--model", default=models.DEFAULT,
                   help=f"model name ({', '.join(models.PRESETS)}), checkpoint path, or engine built by "
                        "`streampose build` (default: %(default)s)")
    r.add_argument("--untrained", action="store_true",
                   help="use fresh weights for a named model (checks the plumbing; keypoints are meaningless)")
    r.add_argument("--box", type=parse_box, default=None,
                   help="person box x,y,w,h in pixels (default: the whole frame)")
    r.add_argument("--backend", default="auto", choices=NAMES,
                   help="inference backend; auto: the fastest that works here (default: %(default)s)")
    r.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default: %(default)s)")
    r.add_argument("--max-frames", type=int, default=0, help="stop after this many frames (0: all)")
    r.add_argument("--json", action="store_true", help="print one JSON object per frame instead of a table")
    r.set_defaults(func=cmd_run)

    i = sub.add_parser("info", help="versions, available backends and this machine's capabilities")
    i.add_argument("--json", action="store_true", help="print as JSON")
    i.set_defaults(func=cmd_info)

    # training lives in the `train` package; the command line is where the packages meet
    from engine.cli import add_parsers as engine_parsers
    from train.cli import add_parsers as train_parsers

    train_parsers(sub)
    engine_parsers(sub)
    for name, text in PLANNED.items():
        sub.add_parser(name, help=f"{text} (not implemented yet)", description=text).set_defaults(func=planned(name))
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from streampose.backends import BackendUnavailable
    from streampose.checkpoint import CheckpointError
    from streampose.sources import SourceError

    try:
        code: int = args.func(args)
    except (UserError, CheckpointError, SourceError, BackendUnavailable, ValueError, OSError) as e:
        print(f"streampose {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"streampose {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`streampose run ... | head`): stop quietly, as `cat` does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    return code


if __name__ == "__main__":
    sys.exit(main())
