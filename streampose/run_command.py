"""`streampose run`: its options and what it does with them, over `PoseStream` (the rest of the command line is
`streampose.cli`)."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from typing import TYPE_CHECKING, Any

import streampose
from streampose import argtypes as at
from streampose import models
from streampose.backends import NAMES
from streampose.cli import UserError, serve_until_ctrl_c, start_viewer
from streampose.crop import CANDIDATES, REDETECT
from streampose.endpoint import VIEW_HOST, VIEW_PORT
from streampose.preview import DEFAULT_FPS as DEFAULT_PREVIEW_FPS
from streampose.wire import to_map

if TYPE_CHECKING:
    from streampose.results import StreamStats
    from streampose.runtime import PoseStream
    from streampose.sources import SourceInfo
    from streampose.viewer import Viewer


def add_parser(sub: Any) -> None:
    """The `run` subcommand, on the `streampose` command's subparsers."""
    r = sub.add_parser(
        "run", help="estimate poses in videos, images, streams or cameras; publish, draw and record them",
        description="Estimate the pose of the person in each frame of every source and publish the keypoints "
                    "over ZeroMQ (wire format in DESIGN.md); optionally draw them into a video and write them "
                    "to a file. Files are processed every frame, in order; cameras and URLs are live "
                    "(stale frames are dropped to keep latency low, and counted).",
        epilog="examples:\n  streampose run clip.mp4 --save out.mp4 --keypoints k.jsonl\n"
               "  streampose run 0 --crop track --smooth          # webcam, follow the person\n"
               "  streampose run a.mp4 b.mp4 --max-batch 8        # two streams, batched together\n"
               "  streampose listen                               # in another terminal: print the poses",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("sources", nargs="*", metavar="SOURCE",
                   help="video file, image, folder of images, URL (rtsp://, http://) or camera index/device")
    r.add_argument("--source", action="append", default=[], metavar="SOURCE",
                   help="another source (repeatable); each gets its own stream id s0, s1, ... in order")
    r.add_argument("--model", default=models.DEFAULT,
                   help=f"model name ({', '.join(models.PRESETS)}), checkpoint path, or engine built by "
                        "`streampose build` (default: %(default)s)")
    r.add_argument("--untrained", action="store_true",
                   help="use fresh weights for a named model (checks the plumbing; keypoints are meaningless)")
    r.add_argument("--backend", default="auto", choices=NAMES,
                   help="inference backend; auto: the fastest that works here (default: %(default)s)")
    r.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default: %(default)s)")
    r.add_argument("--crop", default="auto", type=at.crop_spec,
                   help="how the network finds the person: auto (the person detector on every image; on videos "
                        "and cameras, follow each person's last confident pose and detect on the first frame, when "
                        "one is lost and every --redetect frames), detect (the detector on every frame), "
                        "track+detect (track with the detector, on images too), track (no detector: follow the "
                        "centred person), center (the centred person, the paper's setting) or a person box x,y,w,h "
                        "(default: %(default)s)")
    r.add_argument("--people", type=at.positive_int, default=1,
                   help="pose up to this many people per frame: the most confident detections, batched together, "
                        "each keeping its id across frames (default: %(default)s)")
    r.add_argument("--detector", default=models.DETECTOR,
                   help="person detector: model name, checkpoint or engine built by `streampose build` "
                        "(default: %(default)s)")
    r.add_argument("--redetect", type=at.positive_int, default=REDETECT,
                   help="while everyone is tracked, run the detector every this many frames to catch a better "
                        "candidate (default: %(default)s)")
    r.add_argument("--refine", action=argparse.BooleanOptionalAction, default=True,
                   help="where the detector finds the people (images, --crop detect): look at each person a second "
                        "time, cropped from the pose of a first, wider look and at the box's own crop, each joint "
                        "from the surest look: +2 to +4 points PCK on whole images for three times the pose "
                        "network's work (default: on)")
    r.add_argument("--candidates", type=at.count, default=CANDIDATES,
                   help="where the detector places people (every image; on videos, where the tracker detects "
                        "someone new): pose this many detections beyond --people and keep the people whose "
                        "detection and pose are surest together (the athlete rather than the referee beside them: "
                        "+3.5 / +0.3 points PCK on whole LSP / LSPET images); 0: the detector's ranking alone, less "
                        "pose work (default: %(default)s)")
    r.add_argument("--max-batch", type=at.positive_int, default=4,
                   help="frames per inference call, gathered across streams (default: %(default)s)")
    r.add_argument("--jobs", type=at.jobs, default=None,
                   help="batches the backend runs side by side (OpenVINO's streams): 0 as many as it runs best, "
                        "1 one at a time on all cores. Default: 0 when every source is a file (throughput), 1 when "
                        "one is live (each frame's shortest wait)")
    r.add_argument("--max-wait-ms", type=at.seconds, default=0.0,
                   help="how long to wait for a batch to fill; 0 takes what is queued (default: %(default)s)")
    r.add_argument("--flip", action="store_true", help="flip test: average with the mirrored frame (2x compute)")
    r.add_argument("--smooth", action="store_true", help="One-Euro smoothing of each joint over time")
    r.add_argument("--live", action="store_true",
                   help="play video files at their native rate as live sources (drop stale frames)")
    r.add_argument("--publish", default="tcp://127.0.0.1:5555", metavar="ENDPOINT", type=at.publish_endpoint,
                   help="ZeroMQ endpoint to publish on, or 'none' (default: %(default)s, loopback only)")
    r.add_argument("--format", default="msgpack", choices=("msgpack", "json"),
                   help="wire format of published messages (default: %(default)s)")
    r.add_argument("--hwm", type=at.positive_int, default=100,
                   help="messages queued per slow subscriber before dropping for it (default: %(default)s)")
    r.add_argument("--curve-keys", metavar="DIR",
                   help="encrypt with ZeroMQ CURVE and publish only to the readers whose keys are in DIR/authorized "
                        "(make DIR with `streampose keys DIR`); with --connect, this run's keypair (DIR or "
                        "DIR/NAME.key_secret) and the proxy's server.key")
    r.add_argument("--connect", action="store_true",
                   help="connect to a `streampose proxy` frontend at --publish instead of binding it, so that many "
                        "runs publish into one endpoint (give each its own --name)")
    r.add_argument("--name", action="append", metavar="ID",
                   help="stream id of each source, in order (repeatable; default s0, s1, ...)")
    r.add_argument("--preview", nargs="?", const=DEFAULT_PREVIEW_FPS, type=at.rate, metavar="FPS",
                   help="also publish small JPEGs of the frames (at most 640 px wide, FPS a second per stream; "
                        f"default {DEFAULT_PREVIEW_FPS:g}) for `streampose view`, on img/<stream>")
    r.add_argument("--view", nargs="?", const=f"{VIEW_HOST}:{VIEW_PORT}", type=at.host_port, metavar="[HOST:]PORT",
                   help=f"serve the page of `streampose view` for this run (default {VIEW_HOST}:{VIEW_PORT}; "
                        "implies --preview) and keep it up after the run until Ctrl-C")
    r.add_argument("--save", metavar="VIDEO", help="write the frames with skeletons to this video (H.264 .mp4/.mkv)")
    r.add_argument("--keypoints", metavar="FILE", help="write every pose to a .jsonl, .csv or .parquet file")
    r.add_argument("--show", action="store_true", help="show each stream in a window (needs opencv-python)")
    r.add_argument("--max-frames", type=at.count, default=0, help="stop after this many poses in all (0: all)")
    r.add_argument("--json", action="store_true", help="print each pose as a JSON line (the JSON wire map)")
    r.add_argument("-v", "--verbose", action="store_true",
                   help="say which engine runs each model (auto's choice differs between CPUs) and, at the end, "
                        "list each file of a folder that was skipped or damaged, and why")
    r.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    from streampose.backends import is_engine
    from streampose.publish import Publisher
    from streampose.runtime import PoseStream, Sink
    from streampose.sinks import KeypointSink, ProgressSink, PublishSink, ShowSink, VideoSink

    specs = [*args.sources, *args.source]
    if not specs:
        raise UserError("no source given: pass a video, image, folder, URL or camera index, e.g. `streampose run 0`")
    # a checkpoint by name or path opens in the runtime (from its cached engine where it was converted before)
    untrained = args.untrained and not is_engine(args.model)
    model = streampose.load_model(args.model, pretrained=False) if untrained else args.model
    if args.untrained:
        print(f"streampose: warning: {args.model} has untrained weights: the keypoints are meaningless",
              file=sys.stderr)
    # outputs first, so a bad path fails before any work; the runtime closes them all, also on errors
    sinks: list[Sink] = []
    viewer = None
    try:
        if args.show:
            sinks.append(ShowSink(by_person=args.people > 1))
        preview = args.preview or (DEFAULT_PREVIEW_FPS if args.view else None)
        if args.view and args.connect:
            raise UserError("--view reads what this run binds; with --connect, run `streampose view` on the proxy's "
                            "backend instead")
        if (args.view or args.preview) and args.publish == "none":
            raise UserError("--view and --preview need the stream: drop --publish none, or publish on an endpoint "
                            "such as tcp://127.0.0.1:5556")
        if args.publish != "none":
            publisher = Publisher(args.publish, fmt=args.format, hwm=args.hwm, curve_keys=args.curve_keys,
                                  connect=args.connect)
            sinks.append(PublishSink(publisher, preview_fps=preview))
            if args.view:
                viewer = start_viewer(publisher.endpoint, args.view, args.curve_keys)
        if args.save:
            sinks.append(VideoSink(args.save, streams=len(specs), by_person=args.people > 1))
        if args.keypoints:
            sinks.append(KeypointSink(args.keypoints))
        sinks.append(ProgressSink())
        stream = PoseStream(specs, model=model, backend=args.backend, device=args.device, crop=args.crop,
                            people=args.people, detector=args.detector, redetect=args.redetect,
                            refine=args.refine, candidates=args.candidates, max_batch=args.max_batch,
                            max_wait_ms=args.max_wait_ms, flip=args.flip,
                            smooth=args.smooth, live=args.live, sinks=sinks, jobs=args.jobs, names=args.name)
    except BaseException:
        for sink in sinks:
            sink.close()
        if viewer is not None:
            viewer.close()
        raise
    try:
        return _run(args, specs, stream, viewer)
    finally:
        if viewer is not None:
            viewer.close()


def _run(args: argparse.Namespace, specs: list[str], stream: PoseStream, viewer: Viewer | None) -> int:
    table = not args.json and all(i.frames == 1 and not i.live for i in stream.infos.values())
    if args.verbose:  # auto's choice differs between machines (bf16 or int8: `openvino_backend.fastest`)
        engines = [f"{args.model} on {stream.estimator.backend.info.name} {stream.estimator.backend.info.precision}"]
        if stream.detector is not None:
            b = stream.detector.backend.info
            engines.append(f"detector {args.detector} on {b.name} {b.precision}")
        print(f"streampose run: {', '.join(engines)}", file=sys.stderr)
    with stream:
        for n, result in enumerate(stream, 1):
            if args.json:
                print(json.dumps(to_map(result.message(), binary_kp=False)), flush=True)
            elif table:
                if not result.poses:
                    print(f"{result.stream}  frame {result.frame.index}  no person found")
                for pose in result.poses:
                    print(f"{result.stream}  frame {result.frame.index}  person {pose.id}  score {pose.score:.3f}  "
                          f"crop {', '.join(f'{v:.0f}' for v in pose.box)}")
                    for name, (x, y, c) in pose.as_dict().items():
                        print(f"  {name:<12}{x:9.1f}{y:9.1f}   {c:.2f}")
            if args.max_frames and n >= args.max_frames:
                break
    stats = stream.stats
    for sid, st in stats.items():
        print(summary(sid, stream.infos[sid], st, listed=args.verbose), file=sys.stderr)
        if args.verbose:
            for p in sorted(st.problems, key=lambda p: p.path):
                print(f"streampose run: {sid}: {p.path}: {'skipped' if p.skipped else 'damaged'}: {p.reason}"
                      + ("" if p.skipped else " (its frame is what the decoder made of it)"), file=sys.stderr)
        if st.damaged:
            print(f"streampose run: warning: {sid}: skipped {st.damaged} damaged packets of {stream.infos[sid].spec}; "
                  "the frames around them were processed", file=sys.stderr)
    failed = [st.error for st in stats.values() if st.error]
    for error in failed:
        print(f"streampose run: error: {error}", file=sys.stderr)
    if not any(st.delivered for st in stats.values()):
        raise UserError(f"{', '.join(specs)}: no frames could be read")
    if viewer is not None:
        print(f"streampose run: done; the page stays at {viewer.url} until Ctrl-C", file=sys.stderr, flush=True)
        serve_until_ctrl_c(viewer)
    return 1 if failed else 0


def summary(sid: str, info: SourceInfo, st: StreamStats, listed: bool = False) -> str:
    """A stream's line at the end of `run`: frames and throughput, and for a live source the latency from capture
    to publish and the frames dropped; the files of a folder skipped or damaged, and why (`listed`: the lines
    after it name each)."""
    line = f"streampose run: {sid} ({info.spec}): {_count_of(st.delivered, 'frame')}"
    if info.live:  # what a viewer waits; a file's frames wait behind each other, so its figure is throughput
        line += (f", {st.fps:.1f} fps, capture to publish p50 {st.latency_ms():.0f} ms, "
                 f"p99 {st.latency_ms(99):.0f} ms, dropped {st.dropped}")
    else:
        line += f" at {st.fps:.1f} fps"
    for skipped, what in ((False, "damaged, decoded as far as possible"), (True, "skipped")):
        reasons = Counter(p.reason for p in st.problems if p.skipped == skipped)
        if reasons:
            why = ", ".join(f"{n} {r}" if len(reasons) > 1 else r for r, n in reasons.most_common())
            line += f"; {_count_of(reasons.total(), 'file')} {what} ({why})"
    return line + ("; -v lists them" if st.problems and not listed else "")


def _count_of(n: int, thing: str) -> str:
    return f"{n} {thing}{'' if n == 1 else 's'}"
