"""What makes training fast on this CPU: data loading with and without the crop cache, and the
training step with fp32/bf16 autocast and channels-last, all measured in one run.

    python tools/train_speed.py [--config hg2-lite] [--data ../shared/data/lspet] [--steps 6]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import torch

from streampose import geometry as g
from streampose import models
from streampose.model import StackedHourglass
from streampose.preprocess import Normalization
from streampose.sources import read_image
from train.data import Augment, CropCache, PoseSamples
from train.datasets import load_lsp
from train.loop import masked_mse


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
    args = ap.parse_args()
    cfg = models.PRESETS[args.config].config
    ds = load_lsp(args.data, 1, 400)
    with tempfile.TemporaryDirectory() as tmp:
        cache = CropCache(ds, cfg.input_size, tmp)
        samples = PoseSamples(cache, Normalization(), Augment())

        def uncached(i: int) -> None:  # what a loader without the cache does per sample
            a = ds.items[i]
            img = read_image(a.image)
            m = g.crop_transform(a.center, a.scale, cfg.input_size, 15.0)
            Normalization().apply(g.warp_image(img, m, cfg.input_size)[None])

        n = len(ds)
        cached_ms = per_item_ms(lambda i: samples[0, i], n)
        uncached_ms = per_item_ms(uncached, n)
    print(f"data, ms per sample (incl. augmentation and targets): cached {cached_ms:.2f}   "
          f"decode-every-time {uncached_ms:.2f}   ratio {uncached_ms / cached_ms:.1f}x")

    x = torch.randn(args.batch, 3, cfg.input_size, cfg.input_size)
    y = torch.rand(args.batch, cfg.joints, cfg.heatmap_size, cfg.heatmap_size)
    w = torch.ones(args.batch, cfg.joints)
    print(f"training step, {args.config}, batch {args.batch}, {torch.get_num_threads()} threads:")
    base = None
    for cl in (False, True):
        for bf16 in (False, True):
            torch.manual_seed(0)
            net = StackedHourglass(cfg).train()
            xi = x
            if cl:
                net = net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
                xi = x.contiguous(memory_format=torch.channels_last)
            opt = torch.optim.RMSprop(net.parameters(), lr=2.5e-4)
            times = []
            for i in range(args.steps + 2):
                t = time.perf_counter()
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    out = net(xi)
                loss = masked_mse(out, y, w)
                opt.zero_grad()
                loss.backward()  # type: ignore[no-untyped-call]
                opt.step()
                if i >= 2:
                    times.append(time.perf_counter() - t)
            ips = args.batch / float(np.median(times))
            base = base or ips
            data_share = cached_ms * args.batch / 1000 / float(np.median(times))
            print(f"  channels_last {cl!s:<5} bf16 {bf16!s:<5} {ips:6.1f} img/s  {ips / base:4.2f}x   "
                  f"cached data loading = {100 * data_share:.1f}% of a step")


if __name__ == "__main__":
    main()
