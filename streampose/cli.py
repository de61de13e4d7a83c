"""The `streampose` command line: a thin layer over the library API."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, TextIO

import streampose
from streampose import argtypes as at
from streampose.endpoint import VIEW_HOST, VIEW_PORT
from streampose.wire import Message, to_map

if TYPE_CHECKING:
    from streampose.viewer import Viewer

OPTIONAL = {
    "h5py": ("h5py", ("train",)), "matplotlib": ("matplotlib", ("train",)),
    "openvino": ("openvino", ("cpu",)), "nncf": ("nncf", ("cpu",)), "onnxruntime": ("onnxruntime", ("cpu",)),
    "onnx": ("onnx", ("cpu", "tensorrt")), "onnxscript": ("onnxscript", ("cpu", "tensorrt")),
    "tensorrt": ("tensorrt", ("tensorrt",)), "torch_tensorrt": ("torch-tensorrt", ("tensorrt",)),
    "ray": ("ray", ("scale",)), "pyarrow": ("pyarrow", ("scale",)),
}
"""Modules of the optional extras (pyproject.toml): the package that provides each and the extras that install it."""


def missing_extra(e: ModuleNotFoundError) -> str | None:
    """What to install for a module of an optional extra that is not installed; None for any other module."""
    module = (e.name or "").partition(".")[0]
    if module not in OPTIONAL:
        return None
    package, extras = OPTIONAL[module]
    which = " or ".join(extras)
    return (f"this needs {package}, which the {which} extra{'s' if len(extras) > 1 else ''} install"
            f"{'' if len(extras) > 1 else 's'}: pip install 'streampose[{extras[0]}]'")


class UserError(Exception):
    """Reported as one line on stderr with exit code 1."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that a stopped run still flushes and closes its outputs."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


def _stop_on_sigterm() -> None:
    """`kill`, `docker stop` and systemd send SIGTERM, whose default ends Python without any cleanup
    (a recording without its index, no end-of-stream); treat it as Ctrl-C instead."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)


def start_viewer(endpoint: str, where: tuple[str, int], curve_keys: str | None) -> Viewer:
    from streampose.viewer import Viewer, ViewerError, announce

    try:
        viewer = Viewer(endpoint, host=where[0], port=where[1], curve_keys=curve_keys)
    except ViewerError as e:
        raise UserError(str(e)) from None
    announce(viewer)
    return viewer


def cmd_info(args: argparse.Namespace) -> int:
    from streampose.info import format_report, report

    r = report()
    print(json.dumps(r, indent=2) if args.json else format_report(r))
    return 0


def cmd_listen(args: argparse.Namespace) -> int:
    from streampose.subscriber import Subscriber
    from streampose.wire import ControlMessage

    out = None
    if args.jsonl:
        out = sys.stdout if args.jsonl == "-" else open(args.jsonl, "w", encoding="utf-8")
    received, ended = 0, False
    open_streams: set[str] = set()
    try:
        with Subscriber(args.endpoint, streams=args.stream or None, control=args.control or args.until_eos,
                        timeout=args.timeout or None, latest=args.latest, curve_keys=args.curve_keys) as sub:
            for msg in sub:
                if isinstance(msg, ControlMessage):
                    if msg.event == "start":
                        open_streams.add(msg.stream)
                    elif msg.event == "eos" or (msg.event == "error" and not msg.data.get("retrying")):
                        open_streams.discard(msg.stream)
                        ended = True
                    if args.control:
                        _show(msg, out)
                    if args.until_eos and ended and not open_streams:
                        break
                    continue
                received += 1
                _show(msg, out)
                if args.count and received >= args.count:
                    break
            rejected = sub.rejected
    finally:
        if out is not None and out is not sys.stdout:
            out.close()
    if rejected:
        print(f"streampose listen: {rejected} malformed messages skipped", file=sys.stderr)
    if not received and not ended:
        raise UserError(f"no poses from {args.endpoint} within {args.timeout:g} s: is `streampose run` "
                        "publishing there? (check --publish and the port)")
    return 0


def cmd_view(args: argparse.Namespace) -> int:
    host, port = args.host, args.port
    with start_viewer(args.endpoint, (host, port), args.curve_keys) as viewer:
        serve_until_ctrl_c(viewer)
    return 0


def serve_until_ctrl_c(viewer: Viewer) -> None:
    """Ctrl-C is how a page is stopped, not a failure (SIGTERM still is one: 143)."""
    try:
        viewer.wait()
    except Terminated:
        raise
    except KeyboardInterrupt:
        print("streampose view: stopped", file=sys.stderr)


def cmd_keys(args: argparse.Namespace) -> int:
    from streampose.curve import generate

    for path in generate(args.dir, args.name):
        print(path)
    return 0


def _show(msg: Message, out: TextIO | None) -> None:
    from streampose.wire import ControlMessage, PoseMessage

    if out is not None:
        out.write(json.dumps(to_map(msg, binary_kp=False)) + "\n")
        out.flush()
    elif isinstance(msg, ControlMessage):
        print(f"{msg.stream}  {msg.event}  {json.dumps(msg.data)}", flush=True)
    elif isinstance(msg, PoseMessage):
        lag = 1000 * (time.time() - msg.t_capture)
        people = "  ".join(f"#{p.id} score {p.score:.2f}" for p in msg.people) or "no one"
        print(f"{msg.stream}  frame {msg.frame:<6} pts {msg.pts:8.3f}  {msg.joints}  {people}  "
              f"{lag:6.1f} ms since capture", flush=True)


HERE = ("run", "listen", "view", "keys", "info")
"""The commands whose parsers are made here (`run`'s in `run_command`)."""
ELSEWHERE = {"train": "train", "eval": "train", "export": "engine", "build": "engine", "verify": "engine",
             "bench": "engine", "batch": "batch", "proxy": "proxy"}
"""The other commands, by the package or module whose `add_parser(s)` makes them: a start imports only the one it
runs (importing them all took ~45 ms of each start, a tenth of `streampose run` on one image)."""


def _add_elsewhere(sub: argparse._SubParsersAction[argparse.ArgumentParser], which: set[str]) -> None:
    # training lives in the `train` package; the command line is where the packages meet
    if "train" in which:
        from train.cli import add_parsers as train_parsers

        train_parsers(sub)
    if "engine" in which:
        from engine.cli import add_parsers as engine_parsers

        engine_parsers(sub)
    # scaling out: archives on workers or Ray, live streams through a proxy
    if "batch" in which:
        from streampose.batch import add_parser as batch_parser

        batch_parser(sub, at.positive_int, at.crop_spec)
    if "proxy" in which:
        from streampose.proxy import add_parser as proxy_parser

        proxy_parser(sub, lambda text: at.endpoint(text, bind=True))


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The command line's parser; given the command being run, with only that command's parser beside this module's
    (an unknown command, or none, gets them all: `--help` lists them, a typo is told the choices)."""
    p = argparse.ArgumentParser(
        prog="streampose",
        description="Real-time human pose estimation with stacked hourglass networks.",
        epilog="Run `streampose COMMAND --help` for a command's options.",
    )
    p.add_argument("--version", action="version", version=f"streampose {streampose.__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    from streampose.run_command import add_parser as run_parser

    run_parser(sub)

    ls = sub.add_parser(
        "listen", help="print or record the poses a running `streampose run` publishes",
        description="Subscribe to a keypoint stream and print one line per pose, or write the messages as "
                    "JSON lines (the JSON wire map of DESIGN.md).",
        epilog="examples:\n  streampose listen                                   # poses from the default endpoint\n"
               "  streampose listen --jsonl poses.jsonl --until-eos   # record a file run to its end\n"
               "  streampose listen tcp://127.0.0.1:5556 --stream s1 --latest",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ls.add_argument("endpoint", nargs="?", default="tcp://127.0.0.1:5555", type=at.connect_endpoint,
                    help="where `streampose run --publish` publishes (default: %(default)s)")
    ls.add_argument("--stream", action="append", metavar="ID", help="only this stream id (repeatable)")
    ls.add_argument("--control", action="store_true", help="also show start / eos / error / stats messages")
    ls.add_argument("--jsonl", metavar="FILE", help="write each message as a JSON line to FILE ('-': stdout)")
    ls.add_argument("--count", type=at.positive_int, help="stop after this many poses")
    ls.add_argument("--timeout", type=at.seconds, default=10.0,
                    help="stop after this many seconds without a message; 0: wait forever (default: %(default)s)")
    ls.add_argument("--until-eos", action="store_true", help="stop when every stream seen has ended")
    ls.add_argument("--latest", action="store_true",
                    help="skip to the newest pose of each stream when this reader falls behind")
    ls.add_argument("--curve-keys", metavar="DIR",
                    help="read a run started with --curve-keys: DIR holds server.key and this reader's "
                         "client.key_secret (or give DIR/NAME.key_secret for a reader made with --name)")
    ls.set_defaults(func=cmd_listen)

    v = sub.add_parser(
        "view", help="watch a running stream in a web browser: previews with skeletons, fps, latency, state",
        description="Subscribe to a keypoint stream and serve a page that shows each stream live: its newest "
                    "preview (from `streampose run --preview`) with the skeletons drawn over it, or the skeletons "
                    "alone without previews; fps, latency from capture to the browser, and the stream's state "
                    "(running, retrying, ended). A slow browser skips to the newest data and never slows the run. "
                    "It binds loopback; given another --host, it prints a warning and the page needs the random "
                    "token in the URL it prints (HTTP 403 without). Ctrl-C stops it.",
        epilog="examples:\n  streampose run clip.mp4 --preview --live &   streampose view     # then open the URL\n"
               "  streampose run 0 --view                              # the same in one command\n"
               "  streampose view tcp://10.0.0.5:5555 --host 0.0.0.0   # from a laptop on the network (token)\n"
               "  ssh -L 8765:127.0.0.1:8765 camera-box                # or keep it on loopback and tunnel",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    v.add_argument("endpoint", nargs="?", default="tcp://127.0.0.1:5555", type=at.connect_endpoint,
                   help="where `streampose run --publish` publishes (default: %(default)s)")
    v.add_argument("--host", default=VIEW_HOST,
                   help="address to serve the page on (default: %(default)s, this machine only; 0.0.0.0 for every "
                        "interface, with a token)")
    v.add_argument("--port", type=int, default=VIEW_PORT, help="port of the page (default: %(default)s; 0: any free)")
    v.add_argument("--curve-keys", metavar="DIR",
                   help="read a run started with --curve-keys (as `listen --curve-keys`)")
    v.set_defaults(func=cmd_view)

    k = sub.add_parser("keys", help="make ZeroMQ CURVE keys for an encrypted stream (run/listen --curve-keys DIR)",
                       description="Write the publisher's keypair (kept if DIR has one) and a reader's keypair into "
                                   "DIR, the reader's public key into DIR/authorized. Give a remote reader server.key "
                                   "and its own keypair; secret files are readable by you only.")
    k.add_argument("dir", metavar="DIR", help="folder for the key files (created if missing)")
    k.add_argument("--name", default="client", help="the reader's key name (default: %(default)s)")
    k.set_defaults(func=cmd_keys)

    i = sub.add_parser("info", help="versions, available backends and this machine's capabilities")
    i.add_argument("--json", action="store_true", help="print as JSON")
    i.set_defaults(func=cmd_info)

    _add_elsewhere(sub, {ELSEWHERE[command]} if command in ELSEWHERE
                   else set() if command in HERE else set(ELSEWHERE.values()))
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(next((a for a in argv if not a.startswith("-")), None)).parse_args(argv)
    from streampose.backends import BackendUnavailable
    from streampose.checkpoint import CheckpointError
    from streampose.sources import SourceError

    _stop_on_sigterm()
    try:
        code: int = args.func(args)
    except (UserError, CheckpointError, SourceError, BackendUnavailable, ValueError, OSError) as e:
        print(f"streampose {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as e:
        print(f"streampose {args.command}: {'terminated' if isinstance(e, Terminated) else 'interrupted'}",
              file=sys.stderr)
        return 143 if isinstance(e, Terminated) else 130
    except ModuleNotFoundError as e:  # an optional extra that this install lacks: say which to install
        if (hint := missing_extra(e)) is None:
            return _internal_error(args.command, e)
        print(f"streampose {args.command}: error: {hint}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # the reader went away (`streampose run ... | head`): stop quietly, as `cat` does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as e:  # a bug: still one line (outputs were closed on the way out)
        return _internal_error(args.command, e)
    return code


def entry() -> None:
    """The console script (and `python -m streampose`): `main`, then exit. After a signal the outputs are already
    closed and the end of stream published, so the process leaves at once instead of tearing the interpreter
    down (torch's and OpenVINO's modules and thread pools: over a second on a slow host, which a user waiting on
    Ctrl-C, or a supervisor's stop timeout, should not pay)."""
    code = main()
    if code in (130, 143):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def _internal_error(command: str, e: Exception) -> int:
    """A bug: one line, the traceback on request (STREAMPOSE_DEBUG=1)."""
    if os.environ.get("STREAMPOSE_DEBUG"):
        raise e
    print(f"streampose {command}: internal error: {type(e).__name__}: {e} (a bug; please report it, "
          "with the traceback that STREAMPOSE_DEBUG=1 shows)", file=sys.stderr)
    return 70


if __name__ == "__main__":
    sys.exit(main())
