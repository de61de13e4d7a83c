"""The command line as a user runs it: a real subprocess of the installed console script."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import one_line_error, sp


def test_help_lists_every_subcommand() -> None:
    r = sp("--help")
    assert r.returncode == 0
    for cmd in ["run", "listen", "info", "train", "eval", "export", "build", "verify", "bench"]:
        assert f"    {cmd} " in r.stdout


def test_each_command_gets_its_parser_alone_and_a_typo_every_choice() -> None:
    """`build_parser(command)` makes the commands of this module and the one being run; `cli.ELSEWHERE` must name
    every other command, or its start would not find its parser."""
    import argparse

    from streampose.cli import ELSEWHERE, HERE, build_parser

    def commands(p: argparse.ArgumentParser) -> set[str]:
        (sub,) = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
        return set(sub.choices)

    assert commands(build_parser()) == set(HERE) | set(ELSEWHERE)
    assert commands(build_parser("rnu")) == set(HERE) | set(ELSEWHERE)
    assert commands(build_parser("run")) == set(HERE)
    for command, where in ELSEWHERE.items():
        assert command in commands(build_parser(command))
        assert commands(build_parser(command)) - set(HERE) == {c for c, w in ELSEWHERE.items() if w == where}
    r = sp("rnu", "x.jpg")
    assert r.returncode == 2 and "invalid choice: 'rnu'" in r.stderr and "proxy" in r.stderr


def test_info_json() -> None:
    r = sp("info", "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["backends"]["torch"] is True
    assert info["versions"]["torch"] and info["cpu"]["cores"] >= 1
    assert set(info["models"]) >= {"hg2-lite", "hg2"}


def test_run_verbose_names_the_engines_and_info_shows_autos_choice(messi: Path, tmp_path: Path) -> None:
    """Which engine `auto` runs differs between CPUs (bf16 or the shipped int8): `run -v` says which ran, and `info`
    shows the choice recorded on this machine (nothing before a first run, in a fresh cache). The fresh cache also
    makes this a user's first run: both models are converted while they open side by side, and conversions take
    turns (torch.jit's tracing is global; without the lock this run failed 3 times in 3)."""
    import os
    import subprocess
    import sys

    from streampose.backends.openvino_backend import cpu_supports

    env = {**os.environ, "STREAMPOSE_CACHE": str(tmp_path)}
    (tmp_path / "openvino" / "choices").mkdir(parents=True)
    (tmp_path / "openvino" / "choices" / "damaged.json").write_text('{"chosen": 0}')  # left out, not a crash
    before = subprocess.run([sys.executable, "-m", "streampose", "info"], env=env, capture_output=True, text=True)
    assert before.returncode == 0 and "no engine choice timed yet" in before.stdout, before.stderr
    (tmp_path / "openvino" / "choices" / "damaged.json").unlink()
    r = subprocess.run([sys.executable, "-m", "streampose", "run", str(messi), "--publish", "none", "-v"], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    line = next(x for x in r.stderr.splitlines() if " on openvino " in x)
    precision = line.split("hg2-lite on openvino ")[1].split(",")[0]
    assert "detector person-det on openvino" in line
    after = subprocess.run([sys.executable, "-m", "streampose", "info", "--json"], env=env, capture_output=True,
                           text=True)
    choices = json.loads(after.stdout)["engine_choices"]
    if not cpu_supports("int8"):
        assert choices == [] and precision in ("bf16", "fp32")
        return
    (choice,) = choices
    assert choice["engines"][choice["chosen"]]["precision"] == precision and choice["jobs"] == 0  # a file: throughput


def test_run_on_image_prints_keypoints(messi: Path) -> None:
    r = sp("run", str(messi), "--untrained", "--json")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(rows) == 1 and rows[0]["joints"] == "LSP14" and rows[0]["v"] == 2
    assert len(rows[0]["people"]) == 1 and len(rows[0]["people"][0]["kp"]) == 14  # the detector found him
    assert "untrained" in r.stderr


def test_run_on_an_image_without_anyone_says_so(tmp_path: Path) -> None:
    import cv2
    import numpy as np

    grey = tmp_path / "grey.png"
    cv2.imwrite(str(grey), np.full((480, 640, 3), 128, np.uint8))
    r = sp("run", str(grey), "--publish", "none")
    assert r.returncode == 0, r.stderr
    assert "frame 0  no person found" in r.stdout
    r = sp("run", str(grey), "--publish", "none", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["people"] == []


@pytest.mark.parametrize(("content", "expect"), [(None, "neither a checkpoint file nor a model name"),
                                                  (b"PK\x03\x04broken", "truncated or corrupt")])
def test_a_missing_or_corrupt_detector_is_a_one_line_error(tmp_path: Path, messi: Path, content: bytes | None,
                                                          expect: str) -> None:
    det = tmp_path / "det.pt"
    if content is not None:
        det.write_bytes(content)
    line = one_line_error(sp("run", str(messi), "--detector", str(det)))
    assert expect in line and line.startswith("streampose run: error:")
    assert "not a person detector" in one_line_error(sp("run", str(messi), "--detector", "hg2-lite"))
    # and the other way round: the detector is no pose model (it ran, a one-joint skeleton at the box's centre)
    assert "is a person detector, not a pose model" in one_line_error(sp("run", str(messi), "--model", "person-det"))


def test_run_on_video(studio_clip: Path) -> None:
    r = sp("run", str(studio_clip), "--untrained", "--json", "--max-frames", "3")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [row["frame"] for row in rows] == [0, 1, 2]
    assert rows[0]["pts"] < rows[1]["pts"] < rows[2]["pts"]


def test_run_table_output(messi: Path) -> None:
    r = sp("run", str(messi), "--untrained", "--crop", "200,40,120,250")
    assert r.returncode == 0, r.stderr
    assert "head_top" in r.stdout and "l_ankle" in r.stdout


@pytest.mark.parametrize(
    "make_source,expect",
    [
        (lambda d: d / "missing.mp4", "no such file"),
        (lambda d: (d / "notes.txt").write_text("not a video") and d / "notes.txt", "cannot open as video"),
        (lambda d: (d / "empty.jpg").write_bytes(b"") or d / "empty.jpg", "not a readable image"),
        (lambda d: (d / "empty_dir").mkdir() or d / "empty_dir", "no images"),
        (lambda d: (d / "empty.mp4").write_bytes(b"") or d / "empty.mp4", "cannot open as video"),
    ],
)
def test_bad_sources_are_one_line_errors(tmp_path: Path, make_source, expect: str) -> None:  # type: ignore[no-untyped-def]
    src = make_source(tmp_path)
    line = one_line_error(sp("run", str(src), "--untrained"))
    assert expect in line and line.startswith("streampose run: error:")


def test_bad_model_is_a_one_line_error(tmp_path: Path, messi: Path) -> None:
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"\x00" * 100)
    assert "not a streampose checkpoint" in one_line_error(sp("run", str(messi), "--model", str(bad)))


@pytest.mark.parametrize(("option", "expect"), [
    (("--save", "out.avi"), "cannot write video as .avi"),
    (("--keypoints", "missing/k.jsonl"), "does not exist"),
    (("--keypoints", "k.txt"), ".jsonl, .csv or .parquet"),
])
def test_bad_outputs_fail_before_any_work(tmp_path: Path, messi: Path, option: tuple[str, str], expect: str) -> None:
    r = sp("run", str(messi), option[0], str(tmp_path / option[1]))
    assert expect in one_line_error(r)
    assert list(tmp_path.iterdir()) == []


def test_bad_options_are_usage_errors(messi: Path) -> None:
    assert "x,y,w,h" in one_line_error(sp("run", str(messi), "--crop", "1,2,3"), code=2)
    assert "positive integer" in one_line_error(sp("run", str(messi), "--max-batch", "0"), code=2)
    assert "0 or a positive integer" in one_line_error(sp("run", str(messi), "--candidates", "-1"), code=2)


@pytest.mark.parametrize("args", [("run", "IMAGE", "--publish", "tcp://127.0.0.1:99999"),
                                  ("listen", "tcp://127.0.0.1:99999", "--timeout", "0.2")])
def test_an_endpoint_out_of_range_is_a_usage_error(messi: Path, args: tuple[str, ...]) -> None:
    """libzmq would take port 99999 as 34463 (mod 65536): `run` used to report success on a port nobody reads."""
    line = one_line_error(sp(*(str(messi) if a == "IMAGE" else a for a in args)), code=2)
    assert line.startswith(f"streampose {args[0]}: error: argument")
    assert "port 99999 is not a number from 1 to 65535" in line


def test_absent_camera_is_a_one_line_error() -> None:
    assert "camera 9" in one_line_error(sp("run", "9", "--untrained"))


def test_run_saves_video_and_keypoints_for_every_frame(studio_clip: Path, tmp_path: Path) -> None:
    """The issue's acceptance run: every input frame comes out drawn, with its keypoints, same timing."""
    import av

    out, kp = tmp_path / "out.mp4", tmp_path / "k.jsonl"
    r = sp("run", str(studio_clip), "--backend", "torch", "--save", str(out), "--keypoints", str(kp))
    assert r.returncode == 0, r.stderr
    with av.open(str(studio_clip)) as c:
        times_in = [float(f.time) for f in c.decode(c.streams.video[0])]
    with av.open(str(out)) as c:
        times_out = [float(f.time) for f in c.decode(c.streams.video[0])]
    assert len(times_out) == len(times_in) == 399
    assert max(abs(a - b) for a, b in zip(times_in, times_out, strict=True)) < 1e-3
    rows = [json.loads(line) for line in kp.read_text().splitlines()]
    assert [row["frame"] for row in rows] == list(range(399))
    assert all(row["joints"] == "LSP14" and all(len(p["kp"]) == 14 for p in row["people"]) for row in rows)
    assert sum(len(row["people"]) == 1 for row in rows) >= 0.95 * 399  # found and followed


def test_an_engine_only_backend_still_finds_the_person(onnx_engine: Path, messi: Path) -> None:
    """`--backend onnxruntime` with an ONNX pose engine: the detector checkpoint runs on `auto` meanwhile."""
    r = sp("run", str(messi), "--model", str(onnx_engine), "--backend", "onnxruntime", "--json", "--publish", "none")
    assert r.returncode == 0, r.stderr
    assert len(json.loads(r.stdout)["people"]) == 1


def test_a_folder_run_counts_what_it_skipped_and_keeps_decoder_noise_off_the_terminal(messi: Path,
                                                                                      tmp_path: Path) -> None:
    """A truncated JPEG and a text file among the images: no libjpeg line in the middle of the output, and the
    summary counts both, with the reason; `-v` names each file."""
    folder = tmp_path / "photos"
    folder.mkdir()
    whole = messi.read_bytes()
    (folder / "a.jpg").write_bytes(whole)
    (folder / "b.jpg").write_bytes(whole[: len(whole) // 2])
    (folder / "notes.txt").write_text("not a picture")
    r = sp("run", str(folder), "--backend", "torch", "--crop", "center", "-v")
    assert r.returncode == 0, r.stderr
    engines, *lines = r.stderr.splitlines()
    assert engines == "streampose run: hg2-lite on torch fp32"  # -v names the engines first (no detector: center)
    assert all(line.startswith("streampose") for line in lines), r.stderr  # libjpeg's line was printed alone
    assert lines[0].startswith(f"streampose run: s0 ({folder}): 2 frames at ") and "latency" not in lines[0]
    assert lines[0].endswith("; 1 file damaged, decoded as far as possible (Premature end of JPEG file)"
                             "; 1 file skipped (not an image)")
    assert lines[1:] == [
        f"streampose run: s0: {folder / 'b.jpg'}: damaged: Premature end of JPEG file (its frame is what the decoder "
        "made of it)",
        f"streampose run: s0: {folder / 'notes.txt'}: skipped: not an image"]
