"""Pack the training and validation crops into one file that travels to a GPU machine without network.

    python tools/pack_crops.py     # train: LSPET 1-8500 + LSP 1-900; val: LSPET 8501-9000 + LSP 901-1000
    python tools/pack_crops.py --out runs/pack/lsp.npz --side 176 --quality 65
    python tools/pack_crops.py --frames --out runs/pack/frames.npz   # whole images for the person detector, 34.9 MB
    streampose train --data pack:runs/pack/lsp.npz --device cuda ...

Each person is cropped once around the LSP protocol's crop with `--context` times its side (room for scale,
rotation and shift augmentation) at `--side` pixels, WebP-encoded. It refuses to write a pack over `--max-mb`
(35 MB: the project and the pack must travel in 64 MB together).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from train.datasets import DatasetError, open_dataset
from train.pack import load_pack, write_pack

DATA = os.environ.get("STREAMPOSE_DATA", "../shared/data")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", action="append", default=None,
                    help="training set FORMAT:PATH@RANGE, repeatable (default: LSPET 1-8500 and LSP 1-900)")
    ap.add_argument("--val", action="append", default=None,
                    help="validation set, repeatable (default: LSPET 8501-9000 and LSP 901-1000)")
    ap.add_argument("--out", default="runs/pack/lsp.npz")
    ap.add_argument("--frames", action="store_true",
                    help="keep whole images (longer side at most --side, default 192; WebP q55) for the person "
                         "detector, not person crops")
    ap.add_argument("--side", type=int, default=None, help="crop side in pixels (default: 176; frames: 192)")
    ap.add_argument("--context", type=float, default=1.5,
                    help="crop side / the LSP person crop's side (default: %(default)s)")
    ap.add_argument("--quality", type=int, default=None, help="WebP quality 1-100 (default: 60; frames: 55)")
    ap.add_argument("--limit", type=int, default=0, help="only the first N annotations of each set (tests)")
    ap.add_argument("--max-mb", type=float, default=35.0, help="refuse a larger pack (default: %(default)s)")
    args = ap.parse_args(argv)
    train = args.train or [f"lsp:{DATA}/lspet@1-8500", f"lsp:{DATA}/lsp@1-900"]
    val = args.val or [f"lsp:{DATA}/lspet@8501-9000", f"lsp:{DATA}/lsp@901-1000"]
    try:
        parts = []
        for spec, role in [*((s, "train") for s in train), *((s, "val") for s in val)]:
            d = open_dataset(spec)
            parts.append((d.head(args.limit) if args.limit else d, role))
        t = time.perf_counter()
        side = args.side or (192 if args.frames else 176)
        quality = args.quality or (55 if args.frames else 60)
        path = write_pack(parts, args.out, side=side, context=args.context, quality=quality, frames=args.frames)
    except (DatasetError, ValueError) as e:
        print(f"pack_crops: {e}", file=sys.stderr)
        return 1
    mb = path.stat().st_size / 1e6
    pack = load_pack(path, progress=False)
    kind = "whole frames, at most " if args.frames else ""
    print(f"wrote {path}: {len(pack.joints)} images ({len(pack.select('train'))} train, {len(pack.select('val'))} "
          f"val), {kind}{side} px, {mb:.1f} MB, {time.perf_counter() - t:.0f} s")
    if mb > args.max_mb:
        Path(path).unlink()
        print(f"pack_crops: {mb:.1f} MB is over --max-mb {args.max_mb}; lower --side or --quality", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
