"""Real network inputs for parity checks, verification and int8 calibration.

Engines are checked on what they will see: people cropped from real photos for pose models, the whole
photos letterboxed for a person detector (LSPET by default, from `$STREAMPOSE_DATA`), never on random
noise, whose activations look nothing like a person's.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import numpy.typing as npt

from streampose.detect import letterbox
from streampose.geometry import crop_transform
from streampose.model import HourglassConfig
from streampose.preprocess import Normalization, preprocess
from streampose.sources import read_image

DATA = Path(os.environ.get("STREAMPOSE_DATA", "../shared/data"))
CHECK = "lsp:{data}/lspet@8501-8564"
"""Parity and verification crops: 64 images of the validation split."""
CALIBRATE = "lsp:{data}/lspet@1-300"
"""int8 calibration crops: 300 images of the training split (never the validation images)."""


def spec(template: str) -> str:
    return template.format(data=DATA)


def network_inputs(data: str, config: HourglassConfig, norm: Normalization, limit: int = 0
                   ) -> npt.NDArray[np.float32]:
    """(N, 3, S, S) network input from a dataset spec (`FORMAT:PATH[@range]`, see `streampose train --help`):
    each annotated person's crop for a pose model, each whole image letterboxed for a detector."""
    from train.datasets import open_dataset

    ds = open_dataset(data)
    items = ds.items[:limit] if limit else ds.items
    if not items:
        raise ValueError(f"{data}: no annotated people to crop")
    size, out = config.input_size, []
    for start in range(0, len(items), 32):
        chunk = items[start:start + 32]
        images = [read_image(a.image) for a in chunk]
        if config.head == "centernet":
            m = np.stack([letterbox(im.shape[1], im.shape[0], size) for im in images])
        else:
            m = crop_transform(np.array([a.center for a in chunk]), np.array([a.scale for a in chunk]), size)
        out.append(preprocess(images, m, size, norm))
    return np.concatenate(out)
