"""Frames -> network input: one warp per frame straight to the crop, then normalisation.

A frame is a BGR image or, from video, its decoder's 4:2:0 planes (`YUV420`), which are cropped
before any colour conversion: converting a whole frame to BGR costs more CPU than the crop."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from streampose.geometry import warp_image

F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]

# chroma sample (i, j) of a 4:2:0 plane sits at luma pixel (2i + 0.5, 2j + 0.5) (centre siting; H.264's
# default left siting is a quarter luma pixel off, far below what the network resolves)
_CHROMA = np.array([[2.0, 0.0, 0.5], [0.0, 2.0, 0.5], [0.0, 0.0, 1.0]])


@dataclass(frozen=True, eq=False)
class YUV420:
    """A video frame's planes as the decoder left them: 4:2:0, BT.601 limited range (what FFmpeg converts
    untagged video with, and OpenCV's I420 conversion), even width and height. Converting a 1000 x 1000
    frame to BGR costs about 0.8 ms of CPU, which on 2 cores is taken from the model; `warp` converts only
    the crop the network sees, and `bgr()` the whole frame for outputs that draw on it."""

    y: U8
    """(H, W) luma; rows may be padded (any row stride)."""
    u: U8
    """(H/2, W/2)."""
    v: U8

    def __post_init__(self) -> None:
        h, w = self.y.shape
        if h % 2 or w % 2 or self.u.shape != (h // 2, w // 2) or self.v.shape != self.u.shape:
            raise ValueError(f"4:2:0 planes need an even size and half-size chroma, got {self.y.shape}, "
                             f"{self.u.shape}, {self.v.shape}")

    @property
    def shape(self) -> tuple[int, int, int]:
        """(H, W, 3): the shape of the BGR image it stands for."""
        return self.y.shape[0], self.y.shape[1], 3

    def bgr(self) -> U8:
        """The whole frame as (H, W, 3) BGR."""
        h, w = self.y.shape
        i420 = np.empty((h * 3 // 2, w), dtype=np.uint8)
        for plane, dst in zip((self.y, self.u, self.v), _i420_planes(i420), strict=True):
            dst[:] = plane
        return np.asarray(cv2.cvtColor(i420, cv2.COLOR_YUV2BGR_I420), dtype=np.uint8)

    def warp(self, m: npt.ArrayLike, size: int) -> U8:
        """The crop through the image->crop transform `m` (2, 3), as (size, size, 3) BGR (black outside the
        frame, like `warp_image`): each plane warped into an I420 crop, then only that converted."""
        if size % 2:
            return warp_image(self.bgr(), m, size)
        m3 = np.vstack([np.asarray(m, dtype=np.float64), [0.0, 0.0, 1.0]])
        chroma = (np.linalg.inv(_CHROMA) @ m3 @ _CHROMA)[:2]
        i420 = np.empty((size * 3 // 2, size), dtype=np.uint8)
        y, u, v = _i420_planes(i420)
        # black: Y 0 (clipped to 0 by the conversion), neutral chroma 128
        for plane, dst, t, fill in ((self.y, y, m3[:2], 0), (self.u, u, chroma, 128), (self.v, v, chroma, 128)):
            cv2.warpAffine(plane, t, dst.shape[::-1], dst=dst, flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=fill)
        return np.asarray(cv2.cvtColor(i420, cv2.COLOR_YUV2BGR_I420), dtype=np.uint8)


def _i420_planes(i420: U8) -> tuple[U8, U8, U8]:
    """Views of the Y, U and V planes inside an (H * 3/2, W) I420 buffer."""
    w = i420.shape[1]
    h = i420.shape[0] * 2 // 3
    flat, q = i420.reshape(-1), h * w // 4
    return (flat[:h * w].reshape(h, w), flat[h * w:h * w + q].reshape(h // 2, w // 2),
            flat[h * w + q:].reshape(h // 2, w // 2))


Image = U8 | YUV420
"""A frame as the pipeline takes it: (H, W, 3) BGR (also greyscale or BGRA), or 4:2:0 planes."""


@dataclass(frozen=True)
class Normalization:
    """How a crop's pixels become network input: channel order, then (x/255 - mean) / std.

    Stored in every checkpoint and engine so the runtime never guesses it.
    """

    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    rgb: bool = True  # the network sees RGB; frames arrive BGR (OpenCV's order)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Normalization:
        return cls(mean=tuple(map(float, d["mean"])), std=tuple(map(float, d["std"])), rgb=bool(d["rgb"]))  # type: ignore[arg-type]

    @cached_property
    def _tables(self) -> list[tuple[F32, int]]:
        """Per input (BGR) channel: its 256-entry byte -> normalised value table, and its output channel."""
        v = np.arange(256, dtype=np.float32) / np.float32(255.0)
        out = []
        for bgr in range(3):
            net = 2 - bgr if self.rgb else bgr
            out.append((((v - np.float32(self.mean[net])) / np.float32(self.std[net])).astype(np.float32), net))
        return out

    def apply(self, crops: Sequence[npt.NDArray[np.uint8]] | npt.NDArray[np.uint8]) -> F32:
        """(N, H, W, 3) uint8 BGR crops -> (N, 3, H, W) float32 network input.

        Each channel plane goes through a 256-entry table (cv2.LUT) straight into its place in the output:
        one pass over the bytes and no float temporaries, 4x faster than numpy's convert-scale-shift-transpose,
        which cost more than the warp itself and stole a core from the model."""
        h, w = crops[0].shape[:2]
        out = np.empty((len(crops), 3, h, w), dtype=np.float32)
        for crop, dst in zip(crops, out, strict=True):
            for plane, (table, net) in zip(cv2.split(crop), self._tables, strict=True):
                cv2.LUT(plane, table, dst=dst[net])
        return out


def to_bgr(frame: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """Accept greyscale (H, W) / (H, W, 1) and BGRA frames as well as BGR."""
    if frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] == 1):
        return np.asarray(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR), dtype=np.uint8)
    if frame.ndim == 3 and frame.shape[2] == 4:
        return np.asarray(cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR), dtype=np.uint8)
    if frame.ndim == 3 and frame.shape[2] == 3:
        return frame
    raise ValueError(f"expected an (H, W), (H, W, 3) or (H, W, 4) image, got shape {frame.shape}")


def preprocess(frames: Sequence[Image], transforms: npt.ArrayLike, size: int, norm: Normalization) -> F32:
    """Crop each frame through its image->crop transform (N, 2, 3) and normalise: (N, 3, S, S)."""
    m = np.asarray(transforms, dtype=np.float64)
    if len(frames) != len(m):
        raise ValueError(f"{len(frames)} frames but {len(m)} transforms")
    return norm.apply([f.warp(t, size) if isinstance(f, YUV420) else warp_image(to_bgr(f), t, size)
                       for f, t in zip(frames, m, strict=True)])
