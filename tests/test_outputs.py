"""Output files and drawing, checked by reading the results back with independent decoders
(PyAV for videos, json / csv for keypoints)."""

from __future__ import annotations

import csv
import dataclasses
import itertools
import json
import warnings
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import numpy.typing as npt
import pytest

from streampose.draw import draw_hud, draw_pose
from streampose.joints import LSP14
from streampose.outputs import KeypointWriter, OutputError, VideoWriter
from streampose.wire import Person, PoseMessage

Image = npt.NDArray[np.uint8]


def decode(path: Path) -> tuple[list[Image], list[float], Any]:
    """Frames (BGR), their times and the video stream's codec context of a file."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        frames = list(c.decode(s))
        return [f.to_ndarray(format="bgr24") for f in frames], [float(f.time) for f in frames], s.codec_context


def audio_packets(path: Path) -> list[Any]:
    with av.open(str(path)) as c:
        if not c.streams.audio:
            return []
        return [p for p in c.demux(c.streams.audio[0]) if p.dts is not None]


def clip_with_audio(path: Path, codec: str = "aac", sample_rate: int = 44100, seconds: float = 2.0) -> None:
    """A small clip with a 440 Hz tone: the shared videos have no sound."""
    with av.open(str(path), "w") as c:
        v = c.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        a = c.add_stream(codec, rate=sample_rate)
        a.layout = "mono"
        for i in range(int(seconds * 25)):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 4, np.uint8), format="bgr24")
            frame.pts, frame.time_base = i, Fraction(1, 25)
            c.mux(v.encode(frame))
        n = int(seconds * sample_rate)
        tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(n) / sample_rate)
        step = 1024
        for k in range(0, n, step):
            fmt = "fltp" if codec == "aac" else "s16"
            chunk = tone[None, k:k + step].astype(np.float32) if fmt == "fltp" else \
                (tone[None, k:k + step] * 32767).astype(np.int16)
            af = av.AudioFrame.from_ndarray(chunk, format=fmt, layout="mono")
            af.sample_rate, af.pts, af.time_base = sample_rate, k, Fraction(1, sample_rate)
            c.mux(a.encode(af))
        c.mux(v.encode(None))
        c.mux(a.encode(None))


@pytest.fixture(scope="module")
def basketball(basketball_clip: Path) -> tuple[list[Image], list[float], Fraction, Fraction]:
    """The first 30 frames of the 240p clip with their times, the stream's time base and rate."""
    with av.open(str(basketball_clip)) as c:
        s = c.streams.video[0]
        frames, times = [], []
        for f in c.decode(s):
            frames.append(f.to_ndarray(format="bgr24"))
            times.append(float(f.time))
            if len(frames) == 30:
                break
        return frames, times, Fraction(s.time_base), Fraction(s.average_rate)


# --- VideoWriter -------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".mov"])
def test_video_keeps_every_frame_its_time_and_its_pixels(basketball: Any, basketball_clip: Path, tmp_path: Path,
                                                         suffix: str) -> None:
    frames, times, time_base, rate = basketball
    out = tmp_path / f"out{suffix}"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a source without sound is no reason to warn
        with VideoWriter(out, 426, 240, rate, time_base=time_base, audio_from=basketball_clip) as w:
            for image, t in zip(frames, times, strict=True):
                w.write(image, t)
    decoded, decoded_times, ctx = decode(out)
    assert ctx.name == "h264" and (ctx.width, ctx.height) == (426, 240)
    assert len(decoded) == len(frames) == 30
    assert max(abs(a - b) for a, b in zip(times, decoded_times, strict=True)) < 1e-3
    diff = np.mean([np.abs(a.astype(np.int16) - b).mean() for a, b in zip(frames, decoded, strict=True)])
    assert diff < 8, diff
    assert audio_packets(out) == []


def test_odd_size_is_padded_with_its_edge(tmp_path: Path) -> None:
    h, w = 241, 321
    image = np.zeros((h, w, 3), np.uint8)
    image[..., 0] = np.linspace(0, 255, w, dtype=np.uint8)[None, :]
    image[..., 1] = np.linspace(0, 255, h, dtype=np.uint8)[:, None]
    image[..., 2] = 128
    with VideoWriter(tmp_path / "odd.mp4", w, h, 25) as vw:
        for _ in range(5):
            vw.write(image, None)
    decoded, _, ctx = decode(tmp_path / "odd.mp4")
    assert (ctx.width, ctx.height) == (322, 242) and len(decoded) == 5
    assert np.abs(decoded[-1][:h, :w].astype(np.int16) - image).mean() < 4
    # the added column and row repeat the edge: no dark border
    assert np.abs(decoded[-1][:, -1].astype(np.int16) - decoded[-1][:, -2]).mean() < 6
    assert np.abs(decoded[-1][-1].astype(np.int16) - decoded[-1][-2]).mean() < 6


@pytest.mark.parametrize("rate", [Fraction(30000, 1001), 30000 / 1001, 25])
def test_frames_without_times_are_spaced_at_the_rate(tmp_path: Path, rate: Fraction | float) -> None:
    with VideoWriter(tmp_path / "r.mp4", 32, 32, rate) as w:
        for i in range(10):
            w.write(np.full((32, 32, 3), 20 * i, np.uint8), None)
    _, times, _ = decode(tmp_path / "r.mp4")
    assert len(times) == 10
    assert max(abs(t - i / float(rate)) for i, t in enumerate(times)) < 1e-3


def test_repeated_or_backward_times_still_give_every_frame_in_order(tmp_path: Path) -> None:
    with VideoWriter(tmp_path / "t.mp4", 32, 32, 25, time_base=Fraction(1, 12800)) as w:
        for t in (0.0, 0.0, 0.08, 0.04, 0.12):
            w.write(np.zeros((32, 32, 3), np.uint8), t)
    _, times, _ = decode(tmp_path / "t.mp4")
    assert len(times) == 5 and all(a < b for a, b in itertools.pairwise(times))
    assert times[2] == pytest.approx(0.08) and times[4] == pytest.approx(0.12)


def test_recording_cut_short_is_valid_and_close_is_idempotent(basketball: Any, tmp_path: Path) -> None:
    frames, times, time_base, rate = basketball
    out = tmp_path / "cut.mp4"
    with pytest.raises(KeyboardInterrupt), VideoWriter(out, 426, 240, rate, time_base=time_base) as w:
        for image, t in zip(frames[:7], times, strict=False):
            w.write(image, t)
        raise KeyboardInterrupt
    w.close()
    decoded, decoded_times, _ = decode(out)
    assert len(decoded) == 7 and decoded_times == pytest.approx(times[:7], abs=1e-3)
    with pytest.raises(ValueError, match="after close"):
        w.write(frames[0], None)


def test_bad_video_paths_fail_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match=r"out\.avi.*use \.mp4"):
        VideoWriter(tmp_path / "out.avi", 32, 32, 25)
    with pytest.raises(OutputError, match="does not exist"):
        VideoWriter(tmp_path / "missing" / "out.mp4", 32, 32, 25)
    with pytest.raises(OutputError, match="is a folder"):
        (tmp_path / "dir.mp4").mkdir()
        VideoWriter(tmp_path / "dir.mp4", 32, 32, 25)
    with VideoWriter(tmp_path / "ok.mp4", 32, 32, 25) as w, pytest.raises(ValueError, match="expected"):
        w.write(np.zeros((31, 32, 3), np.uint8), None)


def test_audio_is_copied_up_to_the_last_frame(tmp_path: Path) -> None:
    src = tmp_path / "tone.mp4"
    clip_with_audio(src)
    source_packets = audio_packets(src)
    for frames, suffix in ((50, ".mp4"), (50, ".mkv"), (20, ".mp4")):
        out = tmp_path / f"with_audio_{frames}{suffix}"
        with VideoWriter(out, 64, 48, 25, time_base=Fraction(1, 12800), audio_from=src) as w:
            for i in range(frames):
                w.write(np.full((48, 64, 3), i, np.uint8), i / 25)
        packets = audio_packets(out)
        with av.open(str(out)) as c:
            assert c.streams.audio[0].codec_context.name == "aac"
            samples = sum(f.samples for f in c.decode(audio=0))
        if frames == 50:  # the whole tone, packet for packet
            assert len(packets) == len(source_packets)
            assert [bytes(p) for p in packets] == [bytes(p) for p in source_packets]
        else:  # cut at the video's end (0.8 s), give or take a packet
            assert abs(samples / 44100 - frames / 25) < 2 * 1024 / 44100
        assert len(decode(out)[0]) == frames


def test_audio_the_container_cannot_hold_is_left_out_with_a_warning(tmp_path: Path) -> None:
    src = tmp_path / "mulaw.mov"
    clip_with_audio(src, codec="pcm_mulaw", sample_rate=8000, seconds=0.5)
    with pytest.warns(UserWarning, match="cannot hold the pcm_mulaw audio"), \
            VideoWriter(tmp_path / "silent.mp4", 64, 48, 25, audio_from=src) as w:
        for _ in range(5):
            w.write(np.zeros((48, 64, 3), np.uint8), None)
    assert audio_packets(tmp_path / "silent.mp4") == [] and len(decode(tmp_path / "silent.mp4")[0]) == 5
    with VideoWriter(tmp_path / "kept.mov", 64, 48, 25, audio_from=src) as w:  # .mov holds it
        for _ in range(5):
            w.write(np.zeros((48, 64, 3), np.uint8), None)
    assert len(audio_packets(tmp_path / "kept.mov")) > 0


# --- KeypointWriter ----------------------------------------------------------------------------

def messages(n: int = 3, people: tuple[int, ...] = (1,)) -> list[PoseMessage]:
    """n frames; frame i holds people[i % len(people)] people with ids 0, 1, ..."""
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        found = []
        for person in range(people[i % len(people)]):
            kp = np.concatenate([rng.uniform(0, 400, (14, 2)), rng.uniform(0, 1, (14, 1))], axis=1).astype(np.float32)
            found.append(Person(person, kp, (10.0 + person, 20.0, 200.0, 210.0), float(kp[:, 2].mean())))
        out.append(PoseMessage(stream="cam0", frame=i, pts=i * 1001 / 30000, t_capture=1.7e9 + i / 30,
                               t_publish=1.7e9 + i / 30 + 0.01, size=(426, 240), joints="LSP14", people=tuple(found)))
    return out


def test_jsonl_lines_are_flushed_and_round_trip(tmp_path: Path) -> None:
    path, msgs = tmp_path / "k.jsonl", messages(4, people=(1, 2, 0))
    with KeypointWriter(path) as w:
        for m in msgs:
            w.write(m)
            # readable while the run goes on: a crash now would leave this line
            assert len(path.read_text().splitlines()) == m.frame + 1
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for row, m in zip(rows, msgs, strict=True):  # a line per frame, with everyone in it (no one: an empty list)
        assert (row["stream"], row["frame"], row["joints"], row["size"]) == ("cam0", m.frame, "LSP14", [426, 240])
        assert row["pts"] == m.pts and row["v"] == 2 and len(row["people"]) == len(m.people)
        for r, p in zip(row["people"], m.people, strict=True):
            assert r["id"] == p.id and r["box"] == list(p.box) and r["score"] == p.score
            np.testing.assert_array_equal(np.asarray(r["kp"], np.float32), p.kp)


def test_csv_has_a_row_per_person_a_named_column_per_joint_and_round_trips(tmp_path: Path) -> None:
    path, msgs = tmp_path / "k.csv", messages(4, people=(0, 2, 1))
    with KeypointWriter(path) as w:
        for m in msgs:
            w.write(m)
    with path.open(newline="") as f:
        header, *rows = list(csv.reader(f))
    assert header[:6] == ["stream", "frame", "pts", "t_capture", "person", "score"]
    assert header[6:9] == ["r_ankle_x", "r_ankle_y", "r_ankle_c"] and header[-1] == "head_top_c"
    assert len(header) == 6 + 3 * 14 and all(len(r) == len(header) for r in rows)
    expected = [(m, p) for m in msgs for p in (m.people or (None,))]  # a frame without anyone keeps one row
    assert len(rows) == len(expected) == 1 + 2 + 1 + 1
    for r, (m, p) in zip(rows, expected, strict=True):
        assert r[0] == "cam0" and int(r[1]) == m.frame and float(r[2]) == m.pts and float(r[3]) == m.t_capture
        if p is None:
            assert r[4:] == [""] * (len(header) - 4)
        else:
            assert int(r[4]) == p.id and float(r[5]) == pytest.approx(p.score)
            np.testing.assert_array_equal(np.asarray(r[6:], np.float32).reshape(14, 3), p.kp)


def test_parquet_has_the_csv_rows_typed_with_nulls_for_a_frame_without_anyone(tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet", reason="Parquet needs pyarrow: pip install 'streampose[scale]'")
    msgs = messages(5, people=(0, 2, 1))
    with KeypointWriter(tmp_path / "k.parquet") as w, KeypointWriter(tmp_path / "k.csv") as c:
        w._parquet.GROUP = 2  # type: ignore[union-attr]  # several row groups from a few frames
        for m in msgs:
            w.write(m)
            c.write(m)
    table = pq.read_table(tmp_path / "k.parquet")
    with (tmp_path / "k.csv").open(newline="") as f:
        header, *rows = list(csv.reader(f))
    assert table.column_names == header and table.num_rows == len(rows) == sum(max(1, len(m.people)) for m in msgs)
    assert pq.ParquetFile(tmp_path / "k.parquet").num_row_groups >= 2
    assert str(table.schema.field("frame").type) == "int64" and str(table.schema.field("l_wrist_x").type) == "float"
    for got, r in zip(table.to_pylist(), rows, strict=True):
        for name, text in zip(header, r, strict=True):
            value = got[name]
            assert (value is None) == (text == "")  # no one found: nulls where the CSV has empty cells
            if value is not None and name != "stream":
                assert np.float32(value) == np.float32(text)


def test_csv_refuses_a_second_joint_set_and_bad_paths_fail(tmp_path: Path) -> None:
    m = messages(1)[0]
    with KeypointWriter(tmp_path / "k.csv") as w:
        w.write(m)
        other = dataclasses.replace(m, joints="MPII16", people=(Person(0, np.zeros((16, 3), np.float32),
                                                                       (0, 0, 1, 1), 0.0),))
        with pytest.raises(OutputError, match=r"use \.jsonl"):
            w.write(other)
    with pytest.raises(OutputError, match=r"k\.txt.*use \.jsonl, \.csv or \.parquet"):
        KeypointWriter(tmp_path / "k.txt")
    with pytest.raises(OutputError, match="does not exist"):
        KeypointWriter(tmp_path / "missing" / "k.jsonl")


# --- drawing -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("h", "w"), [(240, 426), (1080, 1920)])
def test_draw_pose_draws_confident_limbs_only(h: int, w: int) -> None:
    s = w / 426  # the same pose, scaled with the image
    kp = np.zeros((14, 3), np.float32)
    kp[0] = (50 * s, 100 * s, 0.9)    # r_ankle
    kp[1] = (150 * s, 100 * s, 0.8)   # r_knee: the limb r_ankle - r_knee is drawn
    kp[2] = (300 * s, 200 * s, 0.1)   # r_hip: below min_conf, neither it nor r_knee - r_hip is drawn
    kp[3] = (np.nan, np.nan, 0.9)     # l_hip: no position, skipped
    image = np.zeros((h, w, 3), np.uint8)
    draw_pose(image, kp, LSP14, min_conf=0.3, box=(20 * s, 30 * s, 350 * s, 190 * s))
    assert image[round(100 * s), round(100 * s)].any()  # along the limb
    assert not image[round(150 * s), round(225 * s)].any()  # along the doubtful one
    assert not image[round(200 * s), round(300 * s)].any()  # at the doubtful joint
    assert image[round(30 * s), round(200 * s)].any()  # the box's top edge
    # nothing drawn far from the pose
    assert not image[round(60 * s):round(90 * s), round(180 * s):round(360 * s)].any()


def test_draw_pose_places_joints_below_a_pixel() -> None:
    kp = np.zeros((14, 3), np.float32)
    a, b = np.zeros((40, 40, 3), np.uint8), np.zeros((40, 40, 3), np.uint8)
    kp[13] = (20.0, 20.0, 1.0)
    draw_pose(a, kp, LSP14)
    kp[13, 0] = 20.5
    draw_pose(b, kp, LSP14)
    assert not np.array_equal(a, b)
    # half a pixel to the right: the dot's weight moves right by about that much
    cols = np.arange(40)
    centre = [(img[..., 1].sum(axis=0) * cols).sum() / img[..., 1].sum() for img in (a, b)]
    assert centre[1] - centre[0] == pytest.approx(0.5, abs=0.2)


@pytest.mark.parametrize(("h", "w"), [(240, 426), (1080, 1920)])
def test_draw_hud_darkens_the_top_left_and_writes_on_it(h: int, w: int) -> None:
    image = np.full((h, w, 3), 180, np.uint8)
    draw_hud(image, ["29.9 fps", "latency 42 ms", "frame 1234"])
    dark = image[..., 0] < 180
    ys, xs = np.nonzero(dark)
    assert ys.max() < h / 2 and xs.max() < w / 2  # a box at the top left
    assert ys.max() > h / 15  # three lines tall enough to read at this size
    box = image[: ys.max() + 1, : xs.max() + 1]
    assert (box == 255).any() and (box < 100).any()  # white text on a darkened box
    assert (image[h // 2:, w // 2:] == 180).all()


def _stats_after(live: bool, frames: int = 10) -> Any:
    from streampose.results import StreamStats

    stats = StreamStats("s0")
    stats.live, stats.delivered = live, frames
    stats.latencies.extend([1.46] * frames)  # a file: 1.46 s queued behind the batch before it
    return stats


@pytest.mark.parametrize("live", [False, True])
def test_the_hud_shows_a_files_throughput_and_a_live_sources_latency_from_capture(
        live: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file's frames wait their turn behind the frames before them: its `latency p50 1460 ms` was queueing,
    not lag. Files show fps; live sources also the latency, named for what it is."""
    from streampose import sinks
    from streampose.results import Result
    from streampose.sources import Frame

    drawn: list[list[str]] = []
    monkeypatch.setattr(sinks, "draw_hud", lambda image, lines: drawn.append(list(lines)))
    frame = Frame(np.zeros((48, 64, 3), np.uint8), 7, 0.28, 0.0)
    sinks.render(Result("s0", frame, (), LSP14), _stats_after(live))
    (lines,) = drawn
    assert lines[0].endswith(" fps") and lines[-1] == "frame 7"
    assert lines[1:-1] == (["capture to publish 1460 ms"] if live else [])


@pytest.mark.parametrize("live", [False, True])
def test_progress_shows_latency_for_live_streams_only(live: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    from streampose import sinks
    from streampose.results import Result, StreamEvent
    from streampose.sources import Frame, SourceInfo

    class Bar:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.postfix: dict[str, Any] = {}

        def update(self, n: int) -> None:
            pass

        def set_postfix(self, refresh: bool = True, **values: Any) -> None:
            self.postfix = values

    monkeypatch.setattr(sinks, "tqdm", Bar)
    progress, stats = sinks.ProgressSink(), _stats_after(live)
    progress.start(StreamEvent("s0", "start", SourceInfo("clip.mp4", live=live, frames=100)), stats)
    bar = progress.bars["s0"]
    progress.pose(Result("s0", Frame(np.zeros((4, 4, 3), np.uint8), 9, 0.0), (), LSP14), stats)
    assert bar.postfix == ({"capture_to_publish": "1460ms", "dropped": 0} if live else {})


@pytest.mark.parametrize("live", [False, True])
def test_the_run_summary_gives_a_files_throughput_and_a_live_sources_latency(live: bool) -> None:
    from streampose.run_command import summary
    from streampose.sources import SourceInfo

    line = summary("s0", SourceInfo("clip.mp4", live=live), _stats_after(live, frames=399))
    assert line.startswith("streampose run: s0 (clip.mp4): 399 frames")
    if live:
        assert "capture to publish p50 1460 ms, p99 1460 ms, dropped 0" in line
    else:
        assert line.endswith(" fps") and " at " in line and "latency" not in line and "ms" not in line
