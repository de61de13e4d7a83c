"""Where the pipeline loses against the model alone: the figures behind README's pipeline-efficiency notes.

    python tools/pipeline_profile.py                          # hg2, OpenVINO bf16, batch 1, the studio clip
    python tools/pipeline_profile.py --precision int8 --batch 4

Prints, in one run:
- preprocessing per frame of the clip (the warp and the normalisation separately), in ms;
- each inference call timed inside a real pipeline pass (`engine.bench.run_pipeline`) against the same engine
  alone, and the gap between two calls (the inference thread's own work: gathering the batch, decoding the
  heatmaps, the crop policy), medians over the pass.

An inference call that takes longer in the pipeline than alone lost cores to the other stages; a long gap is
work the model waits for.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt

from engine.bench import backends_for, run_pipeline, time_batches
from streampose.api import center_crop
from streampose.backends import Backend
from streampose.geometry import crop_transform, warp_image

DATA = Path(os.environ.get("STREAMPOSE_DATA", Path(__file__).resolve().parent.parent.parent / "shared" / "data"))


class Timed(Backend):
    """Another backend, with the start and end of every `infer` call recorded."""

    def __init__(self, inner: Backend) -> None:
        self.inner, self.info = inner, inner.info
        self.calls: list[tuple[float, float]] = []

    def infer(self, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        t0 = time.perf_counter()
        out = self.inner.infer(batch)
        self.calls.append((t0, time.perf_counter()))
        return out


def _ms(fn: Callable[[], object], repeat: int = 200) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t0) / repeat * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clip", default=str(DATA / "video" / "single_person_studio.mp4"))
    ap.add_argument("--model", default="hg2")
    ap.add_argument("--backend", default="openvino")
    ap.add_argument("--precision", default="bf16")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--cache", default="engines/cache")
    args = ap.parse_args()
    if not Path(args.clip).is_file():
        raise SystemExit(f"{args.clip}: no such clip (set STREAMPOSE_DATA or pass --clip)")
    engine = None
    for _, precision, backend in backends_for(args.model, args.cache, [args.backend]):
        if precision == args.precision:
            engine = backend
            break
        backend.close()  # the other precisions of that backend, built on the way
    if engine is None:
        raise SystemExit(f"no {args.backend} {args.precision} engine works here")
    with engine:
        s, norm = engine.info.input_size, engine.info.normalization
        with av.open(args.clip) as c:
            frame = next(c.decode(video=0)).to_ndarray(format="bgr24")
        t = crop_transform(*center_crop(frame.shape[1], frame.shape[0]), s)
        crop = warp_image(frame, t, s)
        warp, normalise = _ms(lambda: warp_image(frame, t, s)), _ms(lambda: norm.apply(crop[None]))
        print(f"preprocess {frame.shape[1]}x{frame.shape[0]} -> {s} px, ms: warp {warp:.2f}, normalise {normalise:.2f}")
        timed = Timed(engine)
        alone = time_batches(engine, args.batch, rounds=1, round_s=2.0)
        frames, seconds, _, _ = run_pipeline(timed, args.clip, args.batch)
        calls = np.array([e - b for b, e in timed.calls]) * 1e3
        gaps = np.array([timed.calls[i + 1][0] - timed.calls[i][1] for i in range(len(timed.calls) - 1)]) * 1e3
        print(f"{args.model} {args.backend} {args.precision} batch {args.batch}: inference alone {alone * 1e3:.1f} ms, "
              f"in the pipeline {statistics.median(calls):.1f} ms (median of {len(calls)}), gap between calls "
              f"{statistics.median(gaps):.2f} ms; end to end {frames / seconds:.1f} fps vs {args.batch / alone:.1f} "
              "model-only")


if __name__ == "__main__":
    main()
