"""Promise 2, corrupt and hostile media: bad files made from a real clip, each run through the real
`streampose run` process with a recording and a keypoint file. What decodes is processed, what does not is
reported in one line, nothing hangs or prints a traceback, a run that processed nothing exits 1, and the
outputs are closed and valid (the video decodes to its end, every JSON line parses)."""

from __future__ import annotations

import json
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from conftest import count_frames, cut, one_line_error, sp


def _remux(src: Path, dst: Path) -> Path:
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        vin = inp.streams.video[0]
        vout = out.add_stream_from_template(vin)
        for packet in inp.demux(vin):
            if packet.dts is not None:
                packet.stream = vout
                out.mux(packet)
    return dst


def _encode(dst: Path, frames: list[np.ndarray], times_ms: list[int], codec: str = "libx264",
            pix_fmt: str = "yuv420p") -> Path:
    with av.open(str(dst), "w") as out:
        s = out.add_stream(codec, rate=25)
        s.height, s.width = frames[0].shape[:2]
        s.pix_fmt = pix_fmt
        s.time_base = s.codec_context.time_base = Fraction(1, 1000)
        for image, t in zip(frames, times_ms, strict=True):
            f = av.VideoFrame.from_ndarray(image, format="bgr24")
            f.pts, f.time_base = t, Fraction(1, 1000)
            out.mux(s.encode(f))
        out.mux(s.encode())
    return dst


def truncated_mp4(ok: Path, d: Path) -> Path:
    data = ok.read_bytes()  # the index (moov) is at the end: cut off, nothing can be found
    (d / "truncated.mp4").write_bytes(data[: len(data) // 2])
    return d / "truncated.mp4"


def truncated_ts(ok: Path, d: Path) -> Path:
    data = _remux(ok, d / "whole.ts").read_bytes()  # a stream format: the first half still plays
    (d / "truncated.ts").write_bytes(data[: len(data) // 2])
    return d / "truncated.ts"


def garbage_in_the_middle(ok: Path, d: Path) -> Path:
    data = bytearray(ok.read_bytes())
    n = len(data) // 3
    data[n: n + 4000] = np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes()
    (d / "garbage.mp4").write_bytes(bytes(data))
    return d / "garbage.mp4"


def zero_bytes(ok: Path, d: Path) -> Path:
    (d / "zero.mp4").write_bytes(b"")
    return d / "zero.mp4"


def not_a_video(ok: Path, d: Path) -> Path:
    (d / "notes.mp4").write_text("these are notes, not a video\n" * 100)
    return d / "notes.mp4"


def unsupported_codec(ok: Path, d: Path) -> Path:
    data = _remux(ok, d / "ok.mkv").read_bytes()  # the Matroska codec id, renamed to one no decoder has
    assert data.count(b"V_MPEG4/ISO/AVC") == 1
    (d / "codec.mkv").write_bytes(data.replace(b"V_MPEG4/ISO/AVC", b"V_ZZZZZ/ISO/AVC"))
    return d / "codec.mkv"


def one_pixel(ok: Path, d: Path) -> Path:
    frames = [np.full((1, 1, 3), 40 * i, np.uint8) for i in range(5)]
    return _encode(d / "1x1.mkv", frames, [40 * i for i in range(5)], pix_fmt="yuv444p")


def huge_image(ok: Path, d: Path) -> Path:
    cv2.imwrite(str(d / "16k.png"), np.zeros((16384, 16384), np.uint8), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    return d / "16k.png"


def variable_rate(ok: Path, d: Path) -> Path:
    with av.open(str(ok)) as c:
        frames = [f.to_ndarray(format="bgr24") for f in c.decode(c.streams.video[0])][:20]
    gaps = np.random.default_rng(1).integers(10, 120, len(frames))  # 8 to 100 fps, frame by frame
    return _encode(d / "vfr.mp4", frames, [int(t) for t in np.cumsum(gaps) - gaps[0]])


def no_video_stream(ok: Path, d: Path) -> Path:
    with av.open(str(d / "audio.m4a"), "w") as out:
        s = out.add_stream("aac", rate=16000)
        for i in range(20):
            f = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            f.sample_rate, f.pts = 16000, i * 1024
            out.mux(s.encode(f))
        out.mux(s.encode())
    return d / "audio.m4a"


def decodable(path: Path) -> list[float]:
    """An independent count of what can be decoded: every frame of every packet that decodes."""
    times = []
    with av.open(str(path)) as c:
        for packet in c.demux(c.streams.video[0]):
            try:
                times += [float(f.time) for f in packet.decode()]
            except av.FFmpegError:
                pass
    return times


@pytest.fixture(scope="module")
def ok_clip(basketball_clip: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cut(basketball_clip, tmp_path_factory.mktemp("media") / "ok.mp4", 60)


FAILS = [(truncated_mp4, "cannot open as video"), (zero_bytes, "cannot open as video"),
         (not_a_video, "cannot open as video"), (unsupported_codec, "codec is not supported"),
         (no_video_stream, "has no video stream")]
PLAYS = [truncated_ts, garbage_in_the_middle, one_pixel, huge_image, variable_rate]


def run_with_outputs(source: Path, tmp_path: Path) -> tuple[object, Path, Path]:
    out, kp = tmp_path / "out.mp4", tmp_path / "k.jsonl"
    r = sp("run", str(source), "--backend", "torch", "--save", str(out), "--keypoints", str(kp), timeout=120)
    return r, out, kp


@pytest.mark.parametrize(("make", "expect"), FAILS, ids=[f.__name__ for f, _ in FAILS])
def test_unreadable_media_is_a_one_line_error_with_valid_outputs(make: Callable[[Path, Path], Path], expect: str,
                                                                 ok_clip: Path, tmp_path: Path) -> None:
    r, out, kp = run_with_outputs(make(ok_clip, tmp_path), tmp_path)
    line = one_line_error(r)  # type: ignore[arg-type]
    assert line.startswith("streampose run: error:") and expect in line
    assert kp.read_text() == ""  # created, closed, empty: zero valid lines
    assert not out.exists()  # FFmpeg never creates a video without frames


@pytest.mark.parametrize("make", PLAYS, ids=[f.__name__ for f in PLAYS])
def test_what_decodes_is_processed_once_and_outputs_stay_valid(make: Callable[[Path, Path], Path], ok_clip: Path,
                                                               tmp_path: Path) -> None:
    source = make(ok_clip, tmp_path)
    r, out, kp = run_with_outputs(source, tmp_path)
    assert r.returncode == 0, r.stderr  # type: ignore[attr-defined]
    assert "Traceback" not in r.stderr  # type: ignore[attr-defined]
    rows = [json.loads(line) for line in kp.read_text().splitlines()]
    expected = [0.0] if source.suffix == ".png" else decodable(source)
    assert [row["frame"] for row in rows] == list(range(len(expected)))
    np.testing.assert_allclose([row["pts"] for row in rows], expected, atol=1e-6)
    written = count_frames(out)  # the recording decodes to its end, a frame per pose, same times
    assert len(written) == len(rows)
    if source.suffix != ".png":
        np.testing.assert_allclose(written, expected, atol=1e-3)
    print(f"{source.name}: {len(rows)} frames processed; stderr: {r.stderr.strip().splitlines()[-1]}")  # type: ignore[attr-defined]
    if make is garbage_in_the_middle:
        assert 0 < len(rows) < 60 and "damaged packets" in r.stderr  # type: ignore[attr-defined]
    if make is huge_image:
        assert "larger than H.264 allows" in r.stderr  # type: ignore[attr-defined]


def test_a_bad_source_among_several_fails_alone(ok_clip: Path, tmp_path: Path) -> None:
    """With several sources, one that cannot be opened ends its own stream with the error; the others run."""
    bad = zero_bytes(ok_clip, tmp_path)
    out, kp = tmp_path / "out.mp4", tmp_path / "k.jsonl"
    r = sp("run", str(ok_clip), str(bad), "--backend", "torch", "--save", str(out), "--keypoints", str(kp),
           timeout=120)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert f"streampose run: error: {bad}: cannot open as video" in r.stderr
    rows = [json.loads(line) for line in kp.read_text().splitlines()]
    assert [row["frame"] for row in rows if row["stream"] == "s0"] == list(range(60)) and len(rows) == 60
    assert len(count_frames(tmp_path / "out-s0.mp4")) == 60 and not (tmp_path / "out-s1.mp4").exists()


def test_an_image_folder_skips_what_it_cannot_read_and_keeps_decoder_noise_quiet(
        messi: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """What is not an image, or does not decode, is skipped; a truncated JPEG gives what libjpeg made of it. Each
    is listed in `problems`, and libjpeg's `Premature end of JPEG file` does not reach the terminal."""
    from streampose.sources import ImageSource, Problem

    whole = messi.read_bytes()
    (tmp_path / "0.jpg").write_bytes(b"")  # first, and does not decode: the size comes from the next one
    (tmp_path / "1.jpg").write_bytes(whole)
    (tmp_path / "2.jpg").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "3.txt").write_text("notes")
    (tmp_path / "more").mkdir()
    src = ImageSource(tmp_path)
    assert (src.info.width, src.info.height) == (548, 342)
    frames = list(src)
    assert [f.index for f in frames] == [0, 1]
    assert np.array_equal(frames[0].image, cv2.imread(str(messi)))
    assert frames[1].image.shape == frames[0].image.shape
    assert np.array_equal(frames[1].image[:50], frames[0].image[:50])  # the part that was there
    assert src.problems == [
        Problem(str(tmp_path / "3.txt"), True, "not an image"), Problem(str(tmp_path / "more"), True,
                                                                       "a folder (not searched)"),
        Problem(str(tmp_path / "0.jpg"), True, "not a readable image"),
        Problem(str(tmp_path / "2.jpg"), False, "Premature end of JPEG file")]
    assert list(src)[1].image.shape == frames[1].image.shape and len(src.problems) == 4  # again: the same, once
    assert capfd.readouterr().err == ""
