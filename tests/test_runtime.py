"""The streaming runtime on real components: clips decoded by PyAV, the shipped models (pose and person
detector), real ZeroMQ sockets."""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from conftest import count_frames, cut, synced

import streampose
from streampose import people
from streampose.backends import installed
from streampose.detector import PersonDetector
from streampose.preprocess import Image
from streampose.publish import Publisher
from streampose.runtime import PoseStream, Result, Sink, StreamEvent, StreamStats
from streampose.sinks import KeypointSink, PublishSink, VideoSink
from streampose.sources import SourceError, open_source
from streampose.subscriber import Subscriber
from streampose.tracking import TrackCrop
from streampose.wire import ControlMessage, PoseMessage


@pytest.fixture(scope="module")
def clips(basketball_clip: Path, studio_clip: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("clips")
    return cut(basketball_clip, d / "a.mp4", 41), cut(studio_clip, d / "b.mp4", 23)


@pytest.fixture(scope="module")
def estimator() -> Iterator[streampose.PoseEstimator]:
    with streampose.PoseEstimator("hg2-lite", backend="torch") as est:
        yield est


class Collect(Sink):
    """Records what the runtime hands to sinks, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.frames: dict[str, list[int]] = {}

    def start(self, event: StreamEvent, stats: StreamStats) -> None:
        self.events.append((event.stream, "start"))

    def pose(self, result: Result, stats: StreamStats) -> None:
        self.frames.setdefault(result.stream, []).append(result.frame.index)

    def end(self, event: StreamEvent, stats: StreamStats) -> None:
        self.events.append((event.stream, event.kind))


def receive_all(sub: Subscriber, streams: int, out: list[PoseMessage | ControlMessage]) -> None:
    for msg in sub:
        out.append(msg)
        if sum(isinstance(m, ControlMessage) and m.event == "eos" for m in out) == streams:
            return


@pytest.fixture(scope="module")
def short_clips(basketball_clip: Path, studio_clip: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three streams of different sizes and lengths, short enough to run every batch size on every backend."""
    d = tmp_path_factory.mktemp("short")
    return [cut(basketball_clip, d / "a.mp4", 13), cut(studio_clip, d / "b.mp4", 7),
            cut(basketball_clip, d / "c.mp4", 5)]


BACKENDS = ["torch"] + [b for b in ("openvino", "onnxruntime") if installed()[b]]
LOSSLESS = ([("torch", b, 1) for b in range(1, 17)] + [(n, b, 1) for n in BACKENDS[1:] for b in (1, 7, 16)]
            + [("openvino-2jobs", b, 1) for b in (1, 3, 8) if installed()["openvino"]]
            + [("torch", b, 2) for b in (1, 3, 8)] + [("openvino-2jobs", 4, 2)] * installed()["openvino"])
"""(backend, max batch, people): every batch size on torch, a few elsewhere; two people per frame too."""


@pytest.fixture(scope="module")
def estimators(onnx_engine: Path) -> Iterator[dict[str, streampose.PoseEstimator]]:
    """One estimator per backend; `openvino-2jobs` runs two batches side by side (as files run by default)."""
    made = {name: streampose.PoseEstimator(onnx_engine if name == "onnxruntime" else "hg2-lite", backend=name)
            for name in BACKENDS}
    if installed()["openvino"]:
        made["openvino-2jobs"] = streampose.PoseEstimator("hg2-lite", backend="openvino", jobs=2)
    yield made
    for est in made.values():
        est.close()


@pytest.mark.parametrize(("backend", "batch", "people"), LOSSLESS)
def test_files_every_frame_once_in_order_to_every_output(short_clips: list[Path], tmp_path: Path, backend: str,
                                                        batch: int, people: int,
                                                        estimators: dict[str, streampose.PoseEstimator],
                                                        person_detector: PersonDetector) -> None:
    """Promise 1: each decodable frame gives exactly one published message (with its people, up to `people`,
    found by the detector in the loop), one keypoint line and one output frame, in order, with its time;
    checked against an independent decode of each input."""
    expected = {f"s{i}": count_frames(c) for i, c in enumerate(short_clips)}
    video, lines = tmp_path / "out.mp4", tmp_path / "k.jsonl"
    with Publisher("tcp://127.0.0.1:*") as pub, Subscriber(pub.endpoint, control=True, timeout=20) as sub:
        synced(pub, sub)
        got: list[PoseMessage | ControlMessage] = []
        reader = threading.Thread(target=receive_all, args=(sub, len(short_clips), got))
        reader.start()
        collect = Collect()
        sinks = [collect, PublishSink(pub, stats_every=0.2), VideoSink(video, streams=len(short_clips)),
                 KeypointSink(lines)]
        stats = PoseStream([str(c) for c in short_clips], estimator=estimators[backend], max_batch=batch,
                           people=people, detector=person_detector, sinks=sinks).run()
        reader.join(timeout=30)
    rows = [json.loads(line) for line in lines.read_text().splitlines()]
    for sid, times in expected.items():
        poses = [m for m in got if isinstance(m, PoseMessage) and m.stream == sid]
        assert [m.frame for m in poses] == list(range(len(times)))  # each frame exactly once, in order
        np.testing.assert_allclose([m.pts for m in poses], times, atol=1e-6)
        assert all(m.joints == "LSP14" and 0 <= len(m.people) <= people for m in poses)
        assert all(p.kp.shape == (14, 3) for m in poses for p in m.people)
        assert sum(bool(m.people) for m in poses) >= 0.8 * len(poses)  # real people in every clip
        ctl = [m.event for m in got if isinstance(m, ControlMessage) and m.stream == sid]
        assert ctl[0] == "start" and ctl[-1] == "eos" and "error" not in ctl
        assert stats[sid].delivered == len(times) and stats[sid].dropped == 0
        assert collect.frames[sid] == list(range(len(times)))
        assert [r["frame"] for r in rows if r["stream"] == sid] == list(range(len(times)))
        np.testing.assert_allclose(count_frames(tmp_path / f"out-{sid}.mp4"), times, atol=1e-3)
    for sid in expected:  # each stream's start comes before its end
        assert collect.events.index((sid, "start")) < collect.events.index((sid, "eos"))


def test_files_run_batches_side_by_side_and_live_sources_one_at_a_time(clips: tuple[Path, Path]) -> None:
    """The runtime's default `jobs`: throughput on files (OpenVINO streams), the shortest wait when live."""
    if not installed()["openvino"]:
        pytest.skip("needs OpenVINO")
    for live, side_by_side in ((False, True), (True, False)):
        with PoseStream(str(clips[1]), backend="openvino", live=live, crop="center") as stream:
            assert (stream.estimator.backend.info.jobs > 1) == side_by_side
            assert len(list(stream)) >= (2 if live else len(count_frames(clips[1])))


def test_live_file_drops_stale_frames_and_counts_them(clips: tuple[Path, Path], estimator: streampose.PoseEstimator,
                                                      person_detector: PersonDetector) -> None:
    studio = clips[1]
    total = len(count_frames(studio))
    collect = Collect()
    with PoseStream(str(studio), estimator=estimator, detector=person_detector, live=True,
                    sinks=[collect]) as stream:
        results = list(stream)
    st = stream.stats["s0"]
    indices = [r.frame.index for r in results]
    assert indices == sorted(set(indices))  # in order, never twice
    assert st.delivered + st.dropped == total  # every frame is either processed or counted as dropped
    assert st.delivered >= 2
    assert stream.infos["s0"].live


class Counting(PersonDetector):
    """The detector, counting the frames of each batch it is given."""

    def __init__(self, detector: PersonDetector) -> None:
        super().__init__(detector.backend, detector.threshold, detector.top)
        self.batches: list[int] = []

    def detect(self, frames: Sequence[Image]) -> list[npt.NDArray[np.float32]]:
        self.batches.append(len(frames))
        return super().detect(frames)


def test_images_get_the_second_look_find_gives(data: Path, tmp_path: Path, estimator: streampose.PoseEstimator,
                                               person_detector: PersonDetector) -> None:
    """On a folder the runtime looks at each person twice, in batches across images, and lands where
    `PoseEstimator.find` does one image at a time; `refine=False` lands where a single look does. Each image is
    detected once (images waiting are detected together) and its person is person 0."""
    import shutil

    import cv2
    from conftest import shared_file

    folder = tmp_path / "photos"
    folder.mkdir()
    for n in range(901, 907):
        shutil.copy(shared_file(data, f"lsp/images/im{n:04d}.jpg"), folder)
    images = [cv2.imread(str(p)) for p in sorted(folder.iterdir())]
    finder = streampose.PoseEstimator(backend=estimator.backend, detector=person_detector)
    for refine in (True, False):
        counting = Counting(person_detector)
        with PoseStream(str(folder), estimator=estimator, detector=counting, max_batch=4, refine=refine) as stream:
            results = list(stream)
        assert len(results) == len(images) == sum(counting.batches)
        for r, image in zip(results, images, strict=True):
            (expected,) = finder.find(image, refine=refine)
            assert [p.id for p in r.poses] == [0]
            np.testing.assert_allclose(r.pose.keypoints, expected.keypoints, atol=0.05)
    # the tracker on images (each a new scene, prepared ahead of its results): its candidate chosen as one frame is
    with PoseStream(str(folder), estimator=estimator, detector=person_detector, max_batch=4,
                    crop="track+detect") as stream:
        results = list(stream)
    for r, image in zip(results, images, strict=True):
        (expected,) = people.find(estimator, TrackCrop(person_detector, candidates=1), image)
        assert [p.id for p in r.poses] == [0]
        np.testing.assert_allclose(r.pose.keypoints, expected.keypoints, atol=0.05)


def test_track_crop_and_python_api(studio_clip: Path, tmp_path: Path) -> None:
    # the tracker with the detector, as videos run by default: the person (a third of the centre crop tall, off
    # centre) is framed from the first frame. Plain `track` starts from the centre crop, where the 2026-12-04
    # hg2-lite is too unsure of so small a person to take over (test_crop.py says how far it gets)
    clip = cut(studio_clip, tmp_path / "studio80.mp4", 80)
    seen: list[Result] = []
    with PoseStream(str(clip), backend="torch", crop="track+detect", smooth=True, on_pose=seen.append) as stream:
        results = list(stream)
    assert len(results) == len(seen) == len(count_frames(clip))
    h, w = results[0].frame.image.shape[:2]
    # the trained model on a real person: the keypoints lie inside the frame and are confident
    kp = np.stack([r.pose.keypoints for r in results])
    assert (kp[..., 0] >= 0).all() and (kp[..., 0] < w).all() and (kp[..., 1] >= 0).all() and (kp[..., 1] < h).all()
    assert np.median(kp[..., 2]) > 0.3


def test_bad_sources_fail_at_once(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not a video")
    with pytest.raises(SourceError, match="no such file"):
        open_source(tmp_path / "missing.mp4")
    with pytest.raises(SourceError, match="cannot open as video"):
        open_source(text)
    with pytest.raises(SourceError, match="camera 9"):
        open_source("9")


def test_a_bad_model_or_detector_fails_the_start_and_leaves_the_other_closed(messi: Path, tmp_path: Path,
                                                                            estimator: streampose.PoseEstimator
                                                                            ) -> None:
    """The pose model and the detector open side by side (`runtime._open_models`): either one's error is what the
    start raises, whichever finished first; a caller's estimator stays open and usable."""
    import cv2

    from streampose.checkpoint import CheckpointError

    missing = tmp_path / "missing.pt"
    with pytest.raises(CheckpointError, match=r"person detector: .*missing\.pt"):
        PoseStream(str(messi), detector=missing)
    with pytest.raises(CheckpointError, match=r"missing\.pt"):
        PoseStream(str(messi), model=missing)
    with pytest.raises(CheckpointError, match="person detector"):
        PoseStream(str(messi), estimator=estimator, detector=missing)
    assert len(estimator.estimate([cv2.imread(str(messi))])) == 1  # still open
    with PoseStream(str(messi), estimator=estimator, crop="center", detector=missing) as stream:
        assert stream.detector is None and len(list(stream)) == 1  # no detector needed: none opened


def test_stats_and_timing_of_video_sources(clips: tuple[Path, Path]) -> None:
    with open_source(clips[0]) as src:
        info = src.info
        frames = list(src)
    assert (info.width, info.height, info.live) == (426, 240, False)
    assert info.rate == Fraction(30000, 1001) and len(frames) == 41
    assert [f.index for f in frames] == list(range(41))
    assert all(a.t_capture <= b.t_capture for a, b in itertools.pairwise(frames))


def test_network_stream_is_live(studio_clip: Path, tmp_path: Path, estimator: streampose.PoseEstimator,
                                person_detector: PersonDetector) -> None:
    """An MPEG-TS stream served over HTTP from this machine: decoded by PyAV as a live source."""
    import functools
    import http.server

    ts = cut(studio_clip, tmp_path / "live.ts", 23)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}/{ts.name}"
        with PoseStream(url, estimator=estimator, detector=person_detector) as stream:
            results = list(stream)
        server.shutdown()
    st = stream.stats["s0"]
    assert stream.infos["s0"].live and st.error is None
    assert st.delivered == len(results) >= 1
    assert st.delivered + st.dropped == len(count_frames(ts))
