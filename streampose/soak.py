"""The soak benchmark (`streampose bench --soak N`): the runtime on a looped clip for N frames,
publishing to a live subscriber, with memory (RSS) and speed sampled after each pass. It shows whether
a long run leaks (RSS growth after warm-up) or slows down; its JSON and PNG go in docs/RELIABILITY.md.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from streampose.sinks import PublishSink

WARMUP = 0.1
"""Share of the frames treated as warm-up (allocator pools, caches and lazy imports fill up there)."""


def rss_bytes() -> int:
    """This process's resident memory now (Linux /proc; elsewhere psutil if installed)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import psutil  # type: ignore[import-untyped]

        return int(psutil.Process().memory_info().rss)


@dataclass
class Sample:
    frames: int
    """Frames processed so far."""
    seconds: float
    rss_mib: float
    fps: float
    """Over the pass that ended here."""


@dataclass
class SoakReport:
    clip: str
    model: str
    backend: str
    max_batch: int
    frames: int
    seconds: float
    received: int
    """Poses the subscriber got (it is a live reader: it may miss some, never stalls the run)."""
    samples: list[Sample] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        """Memory growth after warm-up: the median RSS of the last quarter of the samples against the median
        of the first quarter after warm-up, in % (medians, because RSS swings as the allocator takes and
        returns frame buffers; a leak shows as a trend, not a swing), with the swing itself; and the spread
        of per-pass fps after warm-up."""
        warm = [s for s in self.samples if s.frames > WARMUP * self.frames] or self.samples
        q = max(1, len(warm) // 4)
        rss = np.array([s.rss_mib for s in warm])
        first, last = float(np.median(rss[:q])), float(np.median(rss[-q:]))
        fps = np.array([s.fps for s in warm])
        return {"rss_start_mib": round(self.samples[0].rss_mib, 1), "rss_first_quarter_mib": round(first, 1),
                "rss_last_quarter_mib": round(last, 1), "rss_growth_pct": round(100 * (last - first) / first, 2),
                "rss_min_mib": round(float(rss.min()), 1), "rss_max_mib": round(float(rss.max()), 1),
                "fps_median": round(float(np.median(fps)), 2), "fps_min": round(float(fps.min()), 2),
                "fps_max": round(float(fps.max()), 2), "fps_cv_pct": round(float(100 * fps.std() / fps.mean()), 2)}

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "summary": self.summary()}


def soak(clip: str | os.PathLike[str], frames: int, model: str = "hg2-lite", backend: str = "auto",
         max_batch: int = 4, progress: bool = True) -> SoakReport:
    """Loop `clip` through a fresh `PoseStream` per pass (one model, one publisher, one subscriber for the
    whole run) until `frames` poses, sampling after each pass."""
    from streampose.api import PoseEstimator
    from streampose.publish import Publisher
    from streampose.runtime import PoseStream
    from streampose.subscriber import Subscriber

    if frames < 1:
        raise ValueError(f"--soak needs a positive number of frames, got {frames}")
    if not Path(clip).is_file():
        raise ValueError(f"{clip}: no such clip; pass one with --soak-clip")
    done, received = threading.Event(), [0]
    with PoseEstimator(model, backend=backend) as est, Publisher("tcp://127.0.0.1:*", hwm=1000) as pub:
        report = SoakReport(os.fspath(clip), model, est.backend.info.name, max_batch, 0, 0.0, 0)
        sub = Subscriber(pub.endpoint, timeout=0.2)

        def read() -> None:
            with sub:
                while not done.is_set():
                    received[0] += sum(1 for _ in sub)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        t0 = time.perf_counter()
        while report.frames < frames:
            t = time.perf_counter()
            stream = PoseStream(os.fspath(clip), estimator=est, max_batch=max_batch, sinks=[_KeepOpen(pub)])
            n = stream.run(max_frames=frames - report.frames)["s0"].delivered
            report.frames += n
            report.samples.append(Sample(report.frames, round(time.perf_counter() - t0, 3),
                                         round(rss_bytes() / 2**20, 2), round(n / (time.perf_counter() - t), 2)))
            if progress:
                s = report.samples[-1]
                print(f"soak: {s.frames:>7} frames  {s.seconds:8.1f} s  RSS {s.rss_mib:7.1f} MiB  {s.fps:6.1f} fps",
                      flush=True)
        report.seconds = round(time.perf_counter() - t0, 2)
        done.set()
        reader.join(timeout=5)
        report.received = received[0]
    return report


class _KeepOpen(PublishSink):
    """Publishes like PublishSink but leaves the publisher open when a pass ends: one serves them all."""

    def close(self) -> None:
        self._open.clear()


def write(report: SoakReport, out: str | os.PathLike[str]) -> list[Path]:
    """`out`/soak.json and, where matplotlib is installed, `out`/soak.png (RSS and fps against frames)."""
    d = Path(out)
    d.mkdir(parents=True, exist_ok=True)
    (d / "soak.json").write_text(json.dumps(report.to_dict(), indent=1))
    written = [d / "soak.json"]
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("soak: matplotlib is not installed (pip install 'streampose[train]'): no PNG", flush=True)
        return written
    x = [s.frames for s in report.samples]
    s = report.summary()
    fig, (a, b) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    a.plot(x, [p.rss_mib for p in report.samples], marker=".")
    a.axvline(WARMUP * report.frames, color="grey", linestyle=":", label="end of warm-up")
    a.set_ylabel("RSS (MiB)")
    a.set_title(f"soak: {report.frames} frames of {Path(report.clip).name} looped, {report.model} on "
                f"{report.backend}, batch {report.max_batch}\nRSS growth after warm-up (last vs first quarter, "
                f"medians) {s['rss_growth_pct']} %", fontsize=10)
    a.legend()
    b.plot(x, [p.fps for p in report.samples], marker=".")
    b.set_ylabel("fps (per pass)")
    b.set_xlabel("frames processed")
    fig.tight_layout()
    fig.savefig(d / "soak.png", dpi=100)
    plt.close(fig)
    return [*written, d / "soak.png"]
