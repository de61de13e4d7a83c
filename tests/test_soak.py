"""Promise 4, long runs: `streampose bench --soak` as a real process on a short loop (the long soak is a
benchmark command, not a CI test; its figures are in docs/RELIABILITY.md)."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import cut, sp


def test_soak_command_samples_every_pass_and_writes_json_and_png(basketball_clip: Path, tmp_path: Path) -> None:
    clip = cut(basketball_clip, tmp_path / "loop.mp4", 40)
    r = sp("bench", "--soak", "200", "--soak-clip", str(clip), "--backends", "torch", "--batches", "1,4",
           "--soak-out", str(tmp_path / "soak"), timeout=300)
    assert r.returncode == 0, r.stderr
    report = json.loads((tmp_path / "soak" / "soak.json").read_text())
    assert report["frames"] == 200 and report["max_batch"] == 4 and report["backend"] == "torch"
    assert [s["frames"] for s in report["samples"]] == [40, 80, 120, 160, 200]  # a sample per pass of the loop
    assert all(s["rss_mib"] > 50 and s["fps"] > 0 for s in report["samples"])
    assert 0 < report["received"] <= 200  # a live subscriber heard the run
    summary = report["summary"]
    assert summary["rss_min_mib"] <= summary["rss_last_quarter_mib"] <= summary["rss_max_mib"]
    assert summary["fps_min"] <= summary["fps_median"] <= summary["fps_max"]
    assert (tmp_path / "soak" / "soak.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
