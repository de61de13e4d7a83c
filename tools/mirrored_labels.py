"""The training images a run trained most often on mirrored labels, drawn: the labels as given (person's right in
red, left in blue) beside the model's pose, so one can see whether the labels or the model had the sides wrong.

    python tools/mirrored_labels.py runs/gpu/hg2-lite/last.pt --pack runs/pack/lsp.npz --out docs/mirrored-labels.png
"""

from __future__ import annotations

import argparse
from collections import Counter

import cv2
import numpy as np

from streampose import checkpoint as ck
from streampose.api import PoseEstimator
from streampose.backends import create
from streampose.joints import LSP14
from train.pack import load_pack

RIGHT, LEFT, MIDDLE = (40, 40, 230), (230, 120, 30), (60, 200, 60)


def draw(image: np.ndarray, kp: np.ndarray, scale: int = 2) -> np.ndarray:
    out = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    for a, b in LSP14.edges:
        if np.isfinite(kp[[a, b], :2]).all():
            side = LSP14.names[b][:2]
            col = RIGHT if side == "r_" else LEFT if side == "l_" else MIDDLE
            pa, pb = (tuple(int(v * scale) for v in kp[i, :2]) for i in (a, b))
            cv2.line(out, pa, pb, col, 2, cv2.LINE_AA)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", help="a training checkpoint whose log has `swap` entries (last.pt, or its --compact copy)")
    ap.add_argument("--pack", required=True, help="the pack it trained on")
    ap.add_argument("--model", default=None, help="model to draw the pose of (default: the run's own weights)")
    ap.add_argument("--count", type=int, default=6)
    ap.add_argument("--out", default="docs/mirrored-labels.png")
    args = ap.parse_args()
    c = ck.load(args.run)
    swaps = [e for e in c.extra.get("log", []) if e.get("kind") == "swap"]
    if not swaps:
        raise SystemExit(f"{args.run}: its log has no mirrored-label entries (trained without --swap-after)")
    times = Counter(name for e in swaps for name in e["images"])
    pack = load_pack(args.pack, progress=False)
    where = {pack.source(int(i)): int(i) for i in pack.select("train")}
    picks = [(name, n) for name, n in times.most_common() if name in where][: args.count]
    estimator = PoseEstimator(backend=create("torch", ck.load(args.model) if args.model else c))
    tiles = []
    centre = (pack.side - 1) / 2
    for name, n in picks:
        i = where[name]
        image = pack.images[i]
        pose = estimator.infer([estimator.prepare(image, (centre, centre), pack.crop / 200.0)])[0].keypoints
        labels = pack.joints[i].copy()
        labels[labels[:, 2] <= 0, :2] = np.nan
        pair = np.concatenate([draw(image, labels), draw(image, pose)], 1)
        cv2.putText(pair, f"{name.split('/')[-1]}: mirrored in {n} of {len(swaps)} epochs", (4, 14),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
        tiles.append(pair)
    rows = [np.concatenate(tiles[k:k + 2], 1) for k in range(0, len(tiles) - 1, 2)]
    cv2.imwrite(args.out, np.concatenate(rows, 0))
    print(f"wrote {args.out}: {len(tiles)} images (labels left, the model's pose right; red: right side, blue: left)")


if __name__ == "__main__":
    main()
