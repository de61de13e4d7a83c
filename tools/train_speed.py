"""What makes training fast on this CPU: batches made from the crop cache against decoding every sample, the
training step with fp32/bf16 autocast and channels-last, batch sizes, a smaller input (progressive resizing:
early epochs small) and, with --compile, torch.compile, all measured in one run.

    python tools/train_speed.py [--config hg2-lite] [--data ../shared/data/lspet] [--steps 6] [--compile]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import replace

import numpy as np
import torch

from streampose import geometry as g
from streampose import models
from streampose.model import StackedHourglass
from streampose.preprocess import Normalization
from streampose.sources import read_image
from train.data import Augment, CropCache, PoseBatches
from train.datasets import load_lsp
from train.losses import masked_mse


def per_item_ms(fn, n: int) -> float:  # type: ignore[no-untyped-def]
    t = time.perf_counter()
    for i in range(n):
        fn(i)
    return (time.perf_counter() - t) / n * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=models.DEFAULT, choices=list(models.PRESETS))
    ap.add_argument("--data", default=os.path.join(os.environ.get("STREAMPOSE_DATA", "../shared/data"), "lspet"))
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=6, help="timed training steps per variant (after 2 warm-up)")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile (slow to compile on 2 cores)")
    args = ap.parse_args()
    cfg = models.PRESETS[args.config].config
    ds = load_lsp(args.data, 1, 400)
    with tempfile.TemporaryDirectory() as tmp:
        cache = CropCache(ds, cfg.input_size, tmp)
        samples = PoseBatches(cache.images, cache.joints, ds.joints, float(cfg.input_size), cfg.input_size,
                              Normalization(), Augment())
        batch = args.batch

        def uncached(i: int) -> None:  # what a loader without the cache does per sample
            a = ds.items[i]
            img = read_image(a.image)
            m = g.crop_transform(a.center, a.scale, cfg.input_size, 15.0)
            Normalization().apply(g.warp_image(img, m, cfg.input_size)[None])

        n = len(ds)
        cached_ms = per_item_ms(lambda i: samples([(0, (i * batch + k) % n) for k in range(batch)]), n // batch) / batch
        uncached_ms = per_item_ms(uncached, n)
    print(f"data, ms per sample (incl. augmentation and targets): cached {cached_ms:.2f}   "
          f"decode-every-time {uncached_ms:.2f}   ratio {uncached_ms / cached_ms:.1f}x")

    print(f"training step, {args.config}, {torch.get_num_threads()} threads:")
    variants = [(args.batch, cfg.input_size, cl, bf16, False) for cl in (False, True) for bf16 in (False, True)]
    variants += [(2 * args.batch, cfg.input_size, True, True, False),
                 (args.batch, cfg.input_size // 2, True, True, False)]  # sizes come in multiples of 64
    if args.compile:
        variants.append((args.batch, cfg.input_size, True, True, True))
    base = None
    for b, size, cl, bf16, compiled in variants:
        c = replace(cfg, input_size=size)
        x = torch.randn(b, 3, size, size)
        y = torch.rand(b, c.joints, c.heatmap_size, c.heatmap_size)
        w = torch.ones(b, c.joints)
        torch.manual_seed(0)
        net = StackedHourglass(c).train()
        if cl:
            net = net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
            x = x.contiguous(memory_format=torch.channels_last)
        step_net = torch.compile(net) if compiled else net
        opt = torch.optim.RMSprop(net.parameters(), lr=2.5e-4)
        times = []
        for i in range(args.steps + (3 if compiled else 2)):
            t = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                out = step_net(x)
            loss = masked_mse(out, y, w)
            opt.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
            if i >= (3 if compiled else 2):
                times.append(time.perf_counter() - t)
        ips = b / float(np.median(times))
        base = base or ips
        data_share = cached_ms * b / 1000 / float(np.median(times))
        print(f"  batch {b:3d} {size:3d} px channels_last {cl!s:<5} bf16 {bf16!s:<5} compile {compiled!s:<5} "
              f"{ips:6.1f} img/s  {ips / base:4.2f}x   batch making = {100 * data_share:.1f}% of a step")


if __name__ == "__main__":
    main()
