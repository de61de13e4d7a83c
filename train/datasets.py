"""Pose datasets behind one interface: a list of `Annotation`s (image path, joints, center, scale).

Joints are (K, 3) float32 in image pixels (pixel centres at integers) with a visibility column:
1 = labelled and visible, 0 = unlabelled or not visible. Formats that carry no person center/scale
get them from the joints the same way the LSP evaluation protocol crops (see `center_scale_from_joints`).

A dataset is named on the command line as `FORMAT:PATH`, e.g. `lsp:../shared/data/lspet`, with
formats `lsp`, `mpii`, `flic` and `coco` (see `LOADERS`). A suffix selects part of it: `@FIRST-LAST`
for LSP images, `@train`, `@valid` or `@all` for MPII and FLIC. A dataset's `name` is such a spec.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from streampose.geometry import box_to_center_scale
from streampose.joints import COCO17, LSP14, MPII16, JointSet

F32 = npt.NDArray[np.float32]

LSPET_TRAIN = (1, 8500)
"""LSPET images used for training (1-based, inclusive); 8501-9000 are the validation split."""
LSPET_VAL = (8501, 9000)

SPLITS = ("train", "valid", "all")
"""Splits of MPII and FLIC: a JSON file's own validation marks, or a folder's train.h5 / valid.h5."""

FLIC11 = (
    "l_shoulder", "l_elbow", "l_wrist", "r_shoulder", "r_elbow", "r_wrist",
    "l_hip", "r_hip", "l_eye", "r_eye", "nose",
)
"""Joint order of FLIC's hourglass annotation files, in `streampose.joints` naming (the person's own
left and right: the left shoulder is on the image's right in every row of the shipped files)."""

FLIC_TO_LSP14 = {i: LSP14.index(n) for i, n in enumerate(FLIC11) if n in LSP14.names}
"""FLIC index -> LSP14 index. The eyes and nose have no LSP14 joint and are dropped."""


@dataclass(frozen=True)
class Annotation:
    image: Path
    joints: F32
    """(K, 3): x, y in image pixels, visibility (1 visible, 0 not / unlabelled)."""
    center: tuple[float, float]
    scale: float
    """Person height ~ 200 * scale pixels (MPII convention)."""
    head_size: float | None = None
    """PCKh reference length in pixels (0.6 x head-box diagonal), where the format has one."""


def labelled(a: Annotation) -> npt.NDArray[np.bool_]:
    """Which joints have coordinates (LSP labels occluded joints too; loaders move MATLAB's 1-based
    coordinates, 0 for missing, by -1; a pack stores missing ones as NaN)."""
    j = a.joints
    return np.asarray((j[:, 0] > -1) & (j[:, 1] > -1))


@dataclass(frozen=True)
class Dataset:
    name: str
    joints: JointSet
    items: list[Annotation]

    def __len__(self) -> int:
        return len(self.items)

    def head(self, n: int) -> Dataset:
        """The first n annotations (quick runs); the name records the cut."""
        return Dataset(f"{self.name}[:{n}]", self.joints, self.items[:n])


class DatasetError(ValueError):
    """A dataset that cannot be read; the message names the file and the problem."""


def labelled_box(joints: npt.ArrayLike, width: int, height: int) -> tuple[float, float, float, float] | None:
    """Bounding box (x, y, w, h) of the labelled joints that lie inside the image, or None."""
    j = np.asarray(joints, dtype=np.float64)
    ok = (j[:, 2] > 0) & (j[:, 0] >= 0) & (j[:, 1] >= 0) & (j[:, 0] <= width - 1) & (j[:, 1] <= height - 1)
    if not ok.any():
        return None
    lo, hi = j[ok, :2].min(axis=0), j[ok, :2].max(axis=0)
    return float(lo[0]), float(lo[1]), float(max(hi[0] - lo[0] + 1, 1.0)), float(max(hi[1] - lo[1] + 1, 1.0))


def center_scale_from_joints(
    joints: npt.ArrayLike, width: int, height: int, margin: float = 1.25
) -> tuple[tuple[float, float], float] | None:
    """The LSP protocol's crop: square, centred on the labelled joints' box, side `margin` x its longer side."""
    box = labelled_box(joints, width, height)
    if box is None:
        return None
    c, s = box_to_center_scale(box, margin=margin)
    return (float(c[0]), float(c[1])), float(s)


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the file header, without decoding the pixels."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return int(im.size[0]), int(im.size[1])
    except OSError as e:
        raise DatasetError(f"{path}: not a readable image ({e})") from None


def load_lsp(root: str | os.PathLike[str], first: int = 1, last: int | None = None) -> Dataset:
    """LSP / LSP-extended: `joints.mat` (14, 3, N) or (3, 14, N) and `images/im%05d.jpg`.

    `first`/`last` select images by their 1-based number, inclusive. Joints with coordinates
    <= 0 are missing in LSPET and get visibility 0. Center and scale come from the joints.
    """
    from scipy.io import loadmat

    root = Path(root)
    mat = root / "joints.mat"
    if not mat.is_file():
        raise DatasetError(f"{mat}: not found; expected an LSP folder with joints.mat and images/")
    raw = np.asarray(loadmat(mat)["joints"], dtype=np.float64)
    if raw.shape[:2] == (3, 14):  # original LSP stores (3, 14, N) with visibility inverted
        raw = raw.transpose(1, 0, 2).copy()
        raw[:, 2] = 1 - raw[:, 2]
    if raw.shape[:2] != (14, 3):
        raise DatasetError(f"{mat}: joints of shape {raw.shape}, expected (14, 3, N)")
    n = raw.shape[2]
    if first > n:
        raise DatasetError(f"{root}: images {first}-{last or n} asked for, but it holds {n} (1-{n}); "
                           f"pick a range within 1-{n}")
    last = n if last is None else min(last, n)
    # LSPET names its images im00001.jpg, the original LSP im0001.jpg
    digits = 4 if (root / "images" / "im0001.jpg").is_file() else 5
    items = []
    for number in range(first, last + 1):
        j = raw[:, :, number - 1].astype(np.float32)
        missing = (j[:, 0] <= 0) | (j[:, 1] <= 0)
        j[missing, 2] = 0
        j[:, :2] -= 1  # MATLAB's 1-based pixel coordinates -> pixel centres at integers from 0
        image = root / "images" / f"im{number:0{digits}d}.jpg"
        cs = center_scale_from_joints(j, *image_size(image))
        if cs is None:  # no labelled joint inside the image: nothing to learn or score
            continue
        items.append(Annotation(image, j, cs[0], cs[1]))
    return Dataset(f"lsp:{root}@{first}-{last}", LSP14, items)


def one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def read_json(path: Path) -> Any:
    """A JSON file, gzip-compressed when its name ends in .gz; DatasetError if absent or unreadable."""
    if not path.is_file():
        raise DatasetError(f"{path}: not found")
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rt", encoding="utf-8") as f:
                return json.load(f)
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DatasetError(f"{path}: not readable JSON ({one_line(e)})") from None


def read_h5(path: Path, keys: Sequence[str]) -> dict[str, npt.NDArray[Any]]:
    """The named datasets of an HDF5 file as arrays; DatasetError if absent, unreadable or incomplete."""
    import h5py

    if not path.is_file():
        raise DatasetError(f"{path}: not found")
    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in keys if k not in f]
            if missing:
                raise DatasetError(f"{path}: no dataset {', '.join(missing)}; expected the hourglass annot layout")
            return {k: np.asarray(f[k][()]) for k in keys}
    except OSError as e:
        raise DatasetError(f"{path}: not a readable HDF5 file ({one_line(e)})") from None


def image_folder(folder: Path) -> Path:
    """Where a format's images are: an `images/` subfolder if there is one, else the folder itself."""
    return folder / "images" if (folder / "images").is_dir() else folder


def matlab_joints(xy: npt.ArrayLike, visible: npt.ArrayLike) -> F32:
    """(K, 2) MATLAB 1-based coordinates and (K,) visibility -> (K, 3) joints with pixel centres at
    integers from 0. Joints with a coordinate <= 0 (unlabelled, or outside the image) or visibility 0
    get visibility 0; their coordinates are shifted like the rest."""
    p = np.asarray(xy, dtype=np.float64)
    v = np.asarray(visible, dtype=np.float64)
    j = np.zeros((len(p), 3), dtype=np.float32)
    j[:, :2] = p - 1
    j[:, 2] = ((v > 0) & (p[:, 0] > 0) & (p[:, 1] > 0)).astype(np.float32)
    return j


def hourglass_adjust(center: npt.ArrayLike, scale: float) -> tuple[tuple[float, float], float]:
    """The hourglass crop from MPII's person centre and scale: the centre moves 15 * scale pixels
    down and the scale grows by 1.25, so that the crop keeps the feet."""
    c = np.asarray(center, dtype=np.float64)
    return (float(c[0]), float(c[1] + 15 * scale)), float(scale * 1.25)


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise DatasetError(f"split {split!r}: expected one of {', '.join(SPLITS)}")


def spec_name(fmt: str, path: Path, split: str) -> str:
    return f"{fmt}:{path}" if split == "all" else f"{fmt}:{path}@{split}"


def hourglass_files(path: Path, split: str) -> list[Path]:
    """The .h5 files PATH names: the file itself (split "all" only: a file carries no split marks),
    or a folder's train.h5 and/or valid.h5 by split."""
    check_split(split)
    if path.is_dir():
        names = ["train.h5", "valid.h5"] if split == "all" else [f"{split}.h5"]
        files = [path / n for n in names if (path / n).is_file()]
        if not files:
            raise DatasetError(f"{path}: no {' or '.join(names)} in this folder (hourglass annot layout)")
        return files
    if not path.exists():
        raise DatasetError(f"{path}: not found")
    if split != "all":
        raise DatasetError(f"{path}: an .h5 file has no {split} marks; name the folder holding train.h5 and valid.h5")
    return [path]


H5_KEYS = ("imgname", "center", "scale", "part", "visible", "normalize")


def load_hourglass_h5(h5: Path, joints: int) -> list[tuple[Path, F32, tuple[float, float], float, float]]:
    """Rows of one hourglass annot file: (image, (K, 3) 1-based-shifted joints, center, scale, normalize).

    Center and scale are kept as the file stores them (MPII's files have `hourglass_adjust` applied
    already, see `load_mpii`); the centre moves by -1 with the joints. Rows without a person centre
    (center x == -1) or with a non-positive scale are skipped, as the hourglass code skips them."""
    a = read_h5(h5, H5_KEYS)
    n = len(a["imgname"])
    if a["part"].shape != (n, joints, 2) or a["visible"].shape != (n, joints):
        raise DatasetError(f"{h5}: part {a['part'].shape} and visible {a['visible'].shape}, expected ({n}, {joints}, 2)"
                           f" and ({n}, {joints})")
    images = image_folder(h5.parent)
    rows = []
    for i in range(n):
        c, s = a["center"][i], float(a["scale"][i])
        if c[0] == -1 or s <= 0:
            continue
        name = a["imgname"][i]
        name = name.decode() if isinstance(name, bytes) else str(name)
        rows.append((images / name, matlab_joints(a["part"][i], a["visible"][i]),
                     (float(c[0]) - 1, float(c[1]) - 1), s, float(a["normalize"][i])))
    return rows


def load_mpii(path: str | os.PathLike[str], split: str = "all") -> Dataset:
    """MPII Human Pose, 16 joints in `MPII16` order, from any of three layouts:

    - hourglass `annot/*.h5` (datasets center, scale, part (N, 16, 2), visible, normalize, imgname):
      PATH is the .h5 file, or a folder holding train.h5 / valid.h5 chosen by `split` ("all": both
      that are there). `head_size` is the file's `normalize` (None where it is <= 0). The files
      store center and scale with the hourglass adjustment (center y + 15 * scale, scale x 1.25)
      already applied -- pose-hg-train's convert_annot.py adds it when writing them, and valid.h5
      matches mpii_annotations.json adjusted, row by row -- so they are kept as they are.
    - `mpii_annotations.json[.gz]` (a list of {img_paths, joint_self (16, 3), objpos,
      scale_provided, isValidation, ...}): `split` picks rows by isValidation.
    - HRNet-style JSON such as `test_mpii.json` (a list of {image, joints (16, 2), joints_vis,
      center, scale}): no split marks, so only split "all". Its joints_vis marks joints as
      labelled, not as visible: occluded joints count as visible there.
      Both JSON layouts carry MPII's raw centre and scale; the hourglass adjustment is applied here
      (`hourglass_adjust`), so every layout gives the same crop. They have no head boxes:
      `head_size` stays None.

    Coordinates are MATLAB 1-based: joints and centre move by -1 to pixel centres at integers from
    0. Joints with a coordinate <= 0 (unlabelled) or visible == 0 (occluded) get visibility 0.
    People without a centre (x == -1) are skipped. Images: the `images/` subfolder of the
    annotation file's folder if it exists, else that folder; they are not opened here.
    """
    path = Path(path)
    check_split(split)
    if not path.exists():
        raise DatasetError(f"{path}: not found")
    if path.is_dir() or path.suffix == ".h5":
        items = [Annotation(im, j, c, s, hs if hs > 0 else None)
                 for h5 in hourglass_files(path, split) for im, j, c, s, hs in load_hourglass_h5(h5, len(MPII16))]
        return Dataset(spec_name("mpii", path, split), MPII16, items)
    if not path.name.endswith((".json", ".json.gz")):
        raise DatasetError(f"{path}: expected an MPII .h5, .json or .json.gz file, or a folder of .h5 files")
    rows = read_json(path)
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise DatasetError(f"{path}: expected a JSON list of person annotations")
    images = image_folder(path.parent)
    marked = bool(rows) and all("isValidation" in r for r in rows)
    if split != "all" and not marked:
        raise DatasetError(f"{path}: no isValidation marks, so no {split} split; use @all")
    items = []
    try:
        for r in rows:
            if split != "all" and bool(r["isValidation"]) != (split == "valid"):
                continue
            if "joint_self" in r:  # mpii_annotations.json
                raw = np.asarray(r["joint_self"], dtype=np.float64).reshape(len(MPII16), 3)
                xy, vis, c, s, image = raw[:, :2], raw[:, 2], r["objpos"], float(r["scale_provided"]), r["img_paths"]
            else:  # HRNet style
                xy = np.asarray(r["joints"], dtype=np.float64).reshape(len(MPII16), 2)
                vis = np.asarray(r["joints_vis"], dtype=np.float64).reshape(len(MPII16))
                c, s, image = r["center"], float(r["scale"]), r["image"]
            if c[0] == -1 or s <= 0:
                continue
            (cx, cy), s = hourglass_adjust(c, s)
            items.append(Annotation(images / str(image), matlab_joints(xy, vis), (cx - 1, cy - 1), s))
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise DatasetError(f"{path}: not an MPII annotation list ({type(e).__name__}: {one_line(e)})") from None
    return Dataset(spec_name("mpii", path, split), MPII16, items)


def load_flic(path: str | os.PathLike[str], split: str = "all") -> Dataset:
    """FLIC in the hourglass annot layout (train.h5, valid.h5: center, scale, part (N, 11, 2),
    visible, normalize, imgname), mapped onto `LSP14`.

    PATH is an .h5 file, or a folder holding train.h5 / valid.h5 chosen by `split`. FLIC's 11 joints
    (`FLIC11`) map by name: l_shoulder -> 9, l_elbow -> 10, l_wrist -> 11, r_shoulder -> 8,
    r_elbow -> 7, r_wrist -> 6, l_hip -> 3, r_hip -> 2; l_eye, r_eye and nose have no LSP14 joint and
    are dropped. LSP14's ankles, knees, neck and head_top, which FLIC lacks, are (0, 0, 0).
    Coordinates are treated as MATLAB 1-based like MPII's (FLIC comes from a .mat file): joints and
    centre move by -1; joints with a coordinate <= 0 (outside the image) or visible == 0 get
    visibility 0. Center and scale are kept from the file, without the MPII adjustment (the shipped
    files have scale 2.2 and centre y 240 in every row: a fixed 440-pixel square around each person,
    centred on the 720x480 frame's height, not a tight person box).
    `normalize` is FLIC's torso-based PCK length, not a head size: `head_size` stays None.
    Images: an `images/` subfolder of the .h5's folder if it exists, else that folder (the shared
    data ships none; they are not opened here).
    """
    path = Path(path)
    lsp = list(FLIC_TO_LSP14.values())
    flic = list(FLIC_TO_LSP14)
    items = []
    for h5 in hourglass_files(path, split):
        for im, j, c, s, _ in load_hourglass_h5(h5, len(FLIC11)):
            out = np.zeros((len(LSP14), 3), dtype=np.float32)
            out[lsp] = j[flic]
            items.append(Annotation(im, out, c, s))
    return Dataset(spec_name("flic", path, split), LSP14, items)


def load_coco(path: str | os.PathLike[str]) -> Dataset:
    """COCO keypoints JSON (images, annotations with keypoints (17 x 3), num_keypoints, bbox), in
    `COCO17` order: one Annotation per person annotation with num_keypoints > 0 (crowd regions
    skipped). Visibility is 1 where COCO's v > 0 (v = 1, labelled but occluded, counts as labelled).

    COCO coordinates are continuous with the image's top-left corner at 0: keypoints move by -0.5
    to pixel centres at integers (unlabelled ones too). Center and scale come from the person's
    bbox via `box_to_center_scale(bbox, margin=1.25)`, whose (w - 1) / 2 centring takes a
    continuous box straight to pixel-centre coordinates; a bbox without area falls back to the
    labelled joints (`center_scale_from_joints`). Images: `images/` beside the JSON if it exists,
    else the JSON's folder, joined with each image's file_name; they are not opened here.
    """
    path = Path(path)
    if path.is_dir():
        raise DatasetError(f"{path}: a folder; expected a COCO keypoints .json file")
    data = read_json(path)
    if not isinstance(data, dict) or "images" not in data or "annotations" not in data:
        raise DatasetError(f"{path}: not a COCO keypoints file (no images / annotations)")
    folder = image_folder(path.parent)
    k = len(COCO17)
    items = []
    try:
        images = {im["id"]: im for im in data["images"]}
        for a in data["annotations"]:
            if a.get("iscrowd", 0) or a.get("num_keypoints", 0) <= 0:
                continue
            raw = np.asarray(a["keypoints"], dtype=np.float64).reshape(k, 3)
            j = np.zeros((k, 3), dtype=np.float32)
            j[:, :2] = raw[:, :2] - 0.5
            j[:, 2] = raw[:, 2] > 0
            im = images[a["image_id"]]
            box = np.asarray(a["bbox"], dtype=np.float64)
            if box.shape == (4,) and np.all(box[2:] > 0):
                c, s = box_to_center_scale(box, margin=1.25)
                cs = (float(c[0]), float(c[1])), float(s)
            else:
                found = center_scale_from_joints(j, int(im["width"]), int(im["height"]))
                if found is None:
                    continue
                cs = found
            items.append(Annotation(folder / str(im["file_name"]), j, cs[0], cs[1]))
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise DatasetError(f"{path}: not a COCO keypoints file ({type(e).__name__}: {one_line(e)})") from None
    return Dataset(f"coco:{path}", COCO17, items)


LOADERS: dict[str, Callable[[str], Dataset]] = {
    "lsp": load_lsp,
    "mpii": load_mpii,
    "flic": load_flic,
    "coco": load_coco,
}
SPLIT_LOADERS: dict[str, Callable[[str, str], Dataset]] = {"mpii": load_mpii, "flic": load_flic}


def open_dataset(spec: str) -> Dataset:
    """`FORMAT:PATH[@FIRST-LAST | @SPLIT]` -> Dataset; the range (1-based, inclusive) selects LSP
    images, SPLIT (train, valid, all) MPII or FLIC people. `A + B` is both, one after the other."""
    if " + " in spec:
        return concat([open_dataset(part.strip()) for part in spec.split(" + ")])
    fmt, sep, rest = spec.partition(":")
    if not sep or fmt not in LOADERS:
        raise DatasetError(f"dataset {spec!r}: expected FORMAT:PATH with FORMAT one of {', '.join(LOADERS)}")
    path, at, span = rest.partition("@")
    if not at:
        return LOADERS[fmt](path)
    if fmt in SPLIT_LOADERS:
        if span not in SPLITS:
            raise DatasetError(f"dataset {spec!r}: split must be @{', @'.join(SPLITS)}")
        return SPLIT_LOADERS[fmt](path, span)
    if fmt != "lsp":
        raise DatasetError(f"dataset {spec!r}: an @ suffix applies to lsp (@FIRST-LAST), mpii and flic (@SPLIT)")
    try:
        first, last = (int(v) for v in span.split("-"))
    except ValueError:
        raise DatasetError(f"dataset {spec!r}: range must be @FIRST-LAST, e.g. @8501-9000") from None
    return load_lsp(path, first, last)


def concat(datasets: Sequence[Dataset]) -> Dataset:
    """Several datasets of one joint set as one, named `A + B`."""
    if not datasets:
        raise DatasetError("no dataset given")
    joints = {d.joints.name for d in datasets}
    if len(joints) > 1:
        raise DatasetError(f"datasets of different joint sets cannot be combined: {', '.join(sorted(joints))}")
    if len(datasets) == 1:
        return datasets[0]
    return Dataset(" + ".join(d.name for d in datasets), datasets[0].joints, [a for d in datasets for a in d.items])


def default_split(spec: str) -> tuple[str, str | None]:
    """Training and validation specs for `--data SPEC` alone: LSPET's images 1-8500 train and
    8501-9000 validate; other formats need an explicit --val."""
    if spec.startswith("lsp:") and "@" not in spec:
        return f"{spec}@{LSPET_TRAIN[0]}-{LSPET_TRAIN[1]}", f"{spec}@{LSPET_VAL[0]}-{LSPET_VAL[1]}"
    return spec, None
