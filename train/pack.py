"""Packed training crops: every person of the training and validation sets in one small file.

A GPU machine with no network gets the project and one file, not 200 MB of datasets: each person is cropped
once around the LSP protocol's crop (square, 1.25 x the labelled joints' box) with `context` times that side,
so that augmentation (scale, rotation, shifts) has real pixels to draw from, resized to `side` pixels and stored
as WebP. Joints are kept in crop pixels; joints without coordinates are NaN.

A pack of *frames* (`frames=True`) keeps each whole image instead, its longer side shrunk to at most `side`: the
person detector must learn from whole photos, since composing crops (a person amid a patch of context) teaches it
that a person is the centre of a patch (measured: 50 % top-1 recall on real images against 74 %).

The file is an `.npz` read with `allow_pickle=False`: `data` (all encoded crops, concatenated), `offsets`,
`joints` (N, K, 3), `part` (N,) the index of the spec each crop came from, `number` (N,) its image number
(1-based for LSP), `parts` and `roles` (per spec: its `FORMAT:PATH@RANGE` and `train` or `val`), and
`side`, `context`, `joint_set`; a frames pack also `shapes` (N, 2), each image's height and width.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from streampose import geometry as g
from streampose.joints import JointSet, get_joint_set
from streampose.sources import read_image
from train.datasets import Annotation, Dataset, DatasetError, center_scale_from_joints, labelled

F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]

ROLES = ("train", "val")

PACKED = " (packed)"
"""Appended to the name of a set read from a pack (its source spec): `train.ship` measures on the source."""


def crop_person(a: Annotation, side: int, context: float) -> tuple[U8, F32]:
    """The annotation's person crop with context, (side, side, 3) BGR, and its joints in crop pixels (NaN where
    the joint has no coordinates)."""
    m = g.crop_transform(a.center, a.scale * context, side)
    j = a.joints.astype(np.float64)
    has = labelled(a)
    out = np.full(j.shape, np.nan, np.float32)
    out[has, :2] = g.transform_points(m, j[has, :2])
    out[:, 2] = np.where(has, j[:, 2], 0)
    return g.warp_image(read_image(a.image), m, side), out


def shrink_frame(a: Annotation, side: int) -> tuple[U8, F32]:
    """The annotation's whole image, its longer side at most `side`, and its joints in those pixels (NaN where
    the joint has no coordinates)."""
    image = read_image(a.image)
    s = min(1.0, side / max(image.shape[:2]))
    if s < 1:
        size = (max(1, round(image.shape[1] * s)), max(1, round(image.shape[0] * s)))
        image = np.asarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)
    j = a.joints.astype(np.float64)
    has = labelled(a)
    out = np.full(j.shape, np.nan, np.float32)
    out[has, :2] = (j[has, :2] + 0.5) * s - 0.5  # pixel centres at integers, before and after
    out[:, 2] = np.where(has, j[:, 2], 0)
    return np.ascontiguousarray(image), out


def write_pack(parts: Sequence[tuple[Dataset, str]], path: str | os.PathLike[str], side: int = 176,
               context: float = 1.5, quality: int = 60, progress: bool = True, frames: bool = False) -> Path:
    """Crops every annotation of each (dataset, role) into one pack file (or keeps its whole image, shrunk, with
    `frames`); returns its path."""
    if not parts:
        raise ValueError("nothing to pack: give at least one dataset")
    names = {d.joints.name for d, _ in parts}
    if len(names) != 1:
        raise ValueError(f"a pack holds one joint set; got {sorted(names)}")
    for _, role in parts:
        if role not in ROLES:
            raise ValueError(f"role must be train or val, got {role!r}")
    todo = [(p, i, a) for p, (d, _) in enumerate(parts) for i, a in enumerate(d.items)]

    def one(item: tuple[int, int, Annotation]) -> tuple[bytes, F32, tuple[int, int]]:
        image, joints = shrink_frame(item[2], side) if frames else crop_person(item[2], side, context)
        ok, buf = cv2.imencode(".webp", image, [cv2.IMWRITE_WEBP_QUALITY, quality])
        if not ok:
            raise DatasetError(f"{item[2].image}: WebP encoding failed")
        return buf.tobytes(), joints, image.shape[:2]

    with ThreadPoolExecutor(os.cpu_count()) as pool:
        done = list(tqdm(pool.map(one, todo), total=len(todo), desc="packing crops", unit="crop",
                         disable=None if progress else True))
    blobs = [b for b, _, _ in done]
    offsets = np.zeros(len(blobs) + 1, np.int64)
    offsets[1:] = np.cumsum([len(b) for b in blobs])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    arrays: dict[str, Any] = {
        "data": np.frombuffer(b"".join(blobs), np.uint8), "offsets": offsets,
        "joints": np.stack([j for _, j, _ in done]).astype(np.float32),
        "part": np.array([p for p, _, _ in todo], np.int16),
        "number": np.array([image_number(a.image) for _, _, a in todo], np.int32),
        "parts": np.array([d.name for d, _ in parts]), "roles": np.array([r for _, r in parts]),
        "side": np.int32(side), "context": np.float32(context), "joint_set": np.array(parts[0][0].joints.name)}
    if frames:
        arrays["shapes"] = np.array([hw for _, _, hw in done], np.int32)
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
    return path


def image_number(path: Path) -> int:
    """LSP's image number from its file name (im00042.jpg -> 42), -1 for other names."""
    digits = "".join(c for c in path.stem if c.isdigit())
    return int(digits) if digits else -1


@dataclass
class Pack:
    """A pack decoded into memory: `images` (N, side, side, 3) BGR crops, or a list of whole images for a
    frames pack; `joints` (N, K, 3) in their pixels (NaN: no coordinates), and where each came from."""

    path: Path
    images: U8 | list[U8]
    joints: F32
    part: npt.NDArray[np.int16]
    number: npt.NDArray[np.int32]
    parts: list[str]
    roles: list[str]
    side: int
    context: float
    joint_set: JointSet
    frames: bool = False

    @property
    def crop(self) -> float:
        """Side of the LSP protocol's person crop, in pack pixels."""
        if self.frames:
            raise ValueError(f"{self.path} holds whole frames (for the person detector), not person crops; pack "
                             "crops for a pose model: python tools/pack_crops.py without --frames")
        return self.side / self.context

    def select(self, role: str) -> npt.NDArray[np.int64]:
        """Indices of the crops of every part with this role."""
        keep = [i for i, r in enumerate(self.roles) if r == role]
        return np.flatnonzero(np.isin(self.part, keep))

    def describe(self, role: str) -> str:
        return " + ".join(p for p, r in zip(self.parts, self.roles, strict=True) if r == role)

    def source(self, i: int) -> str:
        """Where crop i came from, e.g. `lsp:../shared/data/lspet@1-8500 #42`."""
        return f"{self.parts[self.part[i]]} #{self.number[i]}"

    def dataset(self, role: str, folder: str | os.PathLike[str]) -> list[Dataset]:
        """The crops of each part with this role as datasets of image files (written once into `folder`), so
        that the evaluators score them as they score any image: the LSP protocol's crop of a crop is the same
        person crop, and PCK is measured against the torso, whatever the pixel size."""
        out = []
        folder = Path(folder)
        for p, (name, r) in enumerate(zip(self.parts, self.roles, strict=True)):
            if r != role:
                continue
            key = hashlib.sha256(f"{self.path.resolve()}|{self.path.stat().st_mtime_ns}|{p}".encode()).hexdigest()
            sub = folder / f"part{p}-{key[:12]}"
            sub.mkdir(parents=True, exist_ok=True)
            items = []
            for i in np.flatnonzero(self.part == p):
                image = sub / f"{int(i):06d}.png"
                if not image.is_file():
                    cv2.imwrite(str(image), self.images[i])
                j = np.nan_to_num(self.joints[i], nan=-1e4)
                h, w = self.images[i].shape[:2]
                cs = center_scale_from_joints(j, w, h)
                if cs is not None:
                    items.append(Annotation(image, j, cs[0], cs[1]))
            out.append(Dataset(f"{name}{PACKED}", self.joint_set, items))
        return out


def load_pack(path: str | os.PathLike[str], progress: bool = True) -> Pack:
    """Reads and decodes a pack; a clear error for a file that is not one."""
    path = Path(path).expanduser()  # `pack:~/...` reaches here unexpanded: the shell expands only a leading ~
    if not path.is_file():
        raise DatasetError(f"{path}: no such pack; make one with `python tools/pack_crops.py`")
    try:
        with np.load(path, allow_pickle=False) as z:
            data, offsets = z["data"], z["offsets"]
            joints, part, number = z["joints"], z["part"], z["number"]
            parts, roles = [str(p) for p in z["parts"]], [str(r) for r in z["roles"]]
            side, context, joint_set = int(z["side"]), float(z["context"]), str(z["joint_set"])
            shapes = z["shapes"] if "shapes" in z.files else None
    except (OSError, KeyError, ValueError) as e:
        raise DatasetError(f"{path}: not a streampose pack ({e}); make one with `python tools/pack_crops.py`") from None
    images: U8 | list[U8] = (np.empty((len(joints), side, side, 3), np.uint8) if shapes is None
                             else [np.empty(0, np.uint8)] * len(joints))

    def decode(i: int) -> None:
        im = cv2.imdecode(data[offsets[i]:offsets[i + 1]], cv2.IMREAD_COLOR)
        want = (side, side, 3) if shapes is None else (int(shapes[i][0]), int(shapes[i][1]), 3)
        if im is None or im.shape != want:
            raise DatasetError(f"{path}: image {i} is damaged; pack the data again")
        images[i] = np.asarray(im, dtype=np.uint8)

    with ThreadPoolExecutor(os.cpu_count()) as pool:
        list(tqdm(pool.map(decode, range(len(joints))), total=len(joints), desc="unpacking crops", unit="crop",
                  disable=None if progress else True))
    return Pack(path, images, joints.astype(np.float32), part, number, parts, roles, side, context,
                get_joint_set(joint_set), frames=shapes is not None)
