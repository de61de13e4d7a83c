"""Where full-image accuracy is lost: the pose on the labelled crop against the pose on the detector's box.

    python tools/full_image_loss.py            # LSPET 8501-9000 and LSP 901-1000, default models and backend
    python tools/full_image_loss.py --data lsp:../shared/data/lsp@901-1000

For every image, three poses of the labelled person, all with the default pose model:
- *crop given*: the LSP protocol's crop from the labels (what `streampose eval` scores);
- *best box*: the runtime's person finding (a first look 1.2x wider, then the second look), but on the
  detection that overlaps the labelled person's box most, so that picking the wrong person does not count;
- *runtime*: `PoseEstimator.find`, exactly what `streampose run` and `streampose eval --full-image` do.
PCK@0.2 limbs of each, over all images and grouped by that best detection's IoU with the person box: where the
best box already misses the person (IoU < 0.5) the detector is to blame, elsewhere the pose model's handling of a
detector's crop.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from streampose.api import PoseEstimator
from streampose.detect import iou
from streampose.detector import open_detector
from streampose.preprocess import Image
from streampose.sources import read_image
from train.datasets import Dataset, open_dataset
from train.detect_data import annotation_box
from train.evaluate import lsp_pck

DATA = Path(os.environ.get("STREAMPOSE_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
BUCKETS = ((0.0, 0.5), (0.5, 0.7), (0.7, 1.01))
F32 = npt.NDArray[np.float32]


def poses(data: Dataset) -> tuple[dict[str, F32], npt.NDArray[np.float64]]:
    """The three poses (N, K, 3) of every image, NaN where there is none, and the best detection's IoU (N,)."""
    n, k = len(data.items), len(data.joints.names)
    out = {name: np.full((n, k, 3), np.nan, np.float32) for name in ("crop given", "best box", "runtime")}
    best = np.zeros(n)
    chosen: list[F32] = []
    with open_detector() as detector, PoseEstimator(detector=detector) as runtime:
        on_best = PoseEstimator(backend=runtime.backend, detector=lambda _: chosen[-1])  # shares (not closes) it
        for i, a in enumerate(tqdm(data.items, desc=data.name, unit="img", leave=False)):
            image: Image = read_image(a.image)
            out["crop given"][i] = runtime.infer([runtime.prepare(image, a.center, a.scale)])[0].keypoints
            found = runtime.find(image)
            if found:
                out["runtime"][i] = found[0].keypoints
            boxes = detector(image)
            if not len(boxes):
                continue
            overlap = iou(boxes, annotation_box(a, image.shape[1], image.shape[0])[None])[:, 0]
            best[i] = overlap.max()
            chosen.append(boxes[int(overlap.argmax())][None])
            out["best box"][i] = on_best.find(image)[0].keypoints
    return out, best


def report(data: Dataset) -> None:
    found, best = poses(data)
    names = list(found)
    print(f"\n{data.name}: PCK@0.2 (torso), 12 limbs")
    print(f"  {'best box IoU':<14}{'images':>8}{'scored':>8}" + "".join(f"{n:>12}" for n in names))
    for lo, hi in ((0.0, 1.01), *BUCKETS):
        keep = (best >= lo) & (best < hi)
        part = Dataset(data.name, data.joints, [a for a, k in zip(data.items, keep, strict=True) if k])
        if not part.items:
            continue
        scored = [lsp_pck(found[n][keep], part) for n in names]
        label = "all" if hi > 1.0 and lo == 0.0 else f"{lo:.1f}-{min(hi, 1.0):.1f}"
        cells = "".join(f"{100 * r.limbs:12.1f}" for r in scored)
        print(f"  {label:<14}{len(part.items):8d}{scored[0].images:8d}{cells}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", action="append", help="dataset FORMAT:PATH@RANGE, repeatable (default: LSPET "
                                                    "8501-9000 and LSP 901-1000)")
    args = ap.parse_args()
    for spec in args.data or [f"lsp:{DATA / 'lspet'}@8501-9000", f"lsp:{DATA / 'lsp'}@901-1000"]:
        report(open_dataset(spec))


if __name__ == "__main__":
    main()
