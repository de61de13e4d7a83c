"""Dataset loaders against the real annotation files in the shared data. Expected values are read from
the raw files by a different route (h5py, json, scipy) and put through the documented conventions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_file

from streampose.joints import COCO17, LSP14, MPII16
from train.datasets import (
    FLIC11,
    Dataset,
    DatasetError,
    load_coco,
    load_flic,
    load_mpii,
    open_dataset,
)

h5py = pytest.importorskip("h5py")


def h5_arrays(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as f:
        return {k: f[k][()] for k in f}


@pytest.fixture(scope="module")
def mpii_h5(data: Path) -> Path:
    return shared_file(data, "mpii/valid.h5")


@pytest.fixture(scope="module")
def mpii_gz(data: Path) -> Path:
    return shared_file(data, "mpii/mpii_annotations.json.gz")


@pytest.fixture(scope="module")
def mpii_all(mpii_gz: Path) -> Dataset:
    return load_mpii(mpii_gz)


@pytest.fixture(scope="module")
def test_mpii(data: Path) -> Path:
    return shared_file(data, "mpii/test_mpii.json")


@pytest.fixture(scope="module")
def flic(data: Path) -> Path:
    shared_file(data, "flic/train.h5")
    shared_file(data, "flic/valid.h5")
    return data / "flic"


@pytest.fixture(scope="module")
def coco(data: Path) -> Path:
    return shared_file(data, "coco/test_coco.json")


def stacked(ds: Dataset) -> np.ndarray:
    return np.stack([a.joints for a in ds.items])


# --- MPII, hourglass h5 -------------------------------------------------------------------------


def test_mpii_h5_items_and_row0(mpii_h5: Path) -> None:
    ds = load_mpii(mpii_h5)
    raw = h5_arrays(mpii_h5)
    assert len(ds) == len(raw["imgname"]) == 2958
    assert ds.joints is MPII16
    a = ds.items[0]
    assert a.image == mpii_h5.parent / raw["imgname"][0].decode()
    assert a.joints.shape == (16, 3) and a.joints.dtype == np.float32
    np.testing.assert_allclose(a.joints[:, :2], raw["part"][0] - 1)
    np.testing.assert_array_equal(a.joints[:, 2], raw["visible"][0])
    # center: kept as stored (already hourglass-adjusted), moved by -1 with the joints
    assert a.center == pytest.approx((raw["center"][0][0] - 1, raw["center"][0][1] - 1))
    assert a.scale == pytest.approx(raw["scale"][0])
    assert a.head_size == pytest.approx(raw["normalize"][0])
    # first row by hand: right ankle at MATLAB (804, 711)
    assert a.joints[0].tolist() == [803.0, 710.0, 1.0]


def test_mpii_h5_visibility_masking(mpii_h5: Path) -> None:
    ds = load_mpii(mpii_h5)
    raw = h5_arrays(mpii_h5)
    part, vis = raw["part"], raw["visible"]
    expected = (vis > 0) & (part[..., 0] > 0) & (part[..., 1] > 0)
    np.testing.assert_array_equal(stacked(ds)[..., 2], expected.astype(np.float32))
    # the file has all three cases: occluded (visible 0, coordinates given), unlabelled (0, 0),
    # and labelled outside the image (visible 1, a coordinate <= 0): all get visibility 0
    occluded = (vis == 0) & (part > 0).all(-1)
    unlabelled = (part == 0).all(-1)
    outside = (vis == 1) & (part <= 0).any(-1)
    assert occluded.any() and unlabelled.any() and outside.any()
    j = stacked(ds)
    assert (j[occluded, 2] == 0).all() and (j[unlabelled, 2] == 0).all() and (j[outside, 2] == 0).all()
    # row 2: right wrist and elbow occluded
    assert raw["visible"][2][10] == 0 and ds.items[2].joints[10, 2] == 0
    assert ds.items[2].joints[10, :2].tolist() == (raw["part"][2][10] - 1).tolist()


def test_mpii_folder_and_splits(data: Path, mpii_h5: Path) -> None:
    folder = mpii_h5.parent
    assert len(load_mpii(folder)) == 2958  # the folder's valid.h5 (no train.h5 in the shared data)
    assert len(load_mpii(folder, "valid")) == 2958
    with pytest.raises(DatasetError, match=r"train\.h5"):
        load_mpii(folder, "train")
    with pytest.raises(DatasetError, match="no train marks"):
        load_mpii(mpii_h5, "train")
    with pytest.raises(DatasetError, match="split 'test'"):
        load_mpii(folder, "test")


# --- MPII, JSON ---------------------------------------------------------------------------------


def test_mpii_json_gz_splits(mpii_gz: Path, mpii_all: Dataset) -> None:
    import gzip

    with gzip.open(mpii_gz, "rt") as f:
        raw = json.load(f)
    assert len(mpii_all) == len(raw) == 25204
    assert mpii_all.joints is MPII16
    valid, train = load_mpii(mpii_gz, "valid"), load_mpii(mpii_gz, "train")
    assert len(valid) == sum(r["isValidation"] == 1 for r in raw) == 2958
    assert len(train) == 22246
    assert train.name.endswith("@train") and mpii_all.name == f"mpii:{mpii_gz}"
    r, a = raw[0], mpii_all.items[0]
    assert a.image == mpii_gz.parent / r["img_paths"]
    js = np.array(r["joint_self"])
    np.testing.assert_allclose(a.joints[:, :2], js[:, :2] - 1, rtol=0, atol=1e-4)
    np.testing.assert_array_equal(a.joints[:, 2], (js[:, 2] > 0) & (js[:, :2] > 0).all(-1))
    assert a.center == pytest.approx((r["objpos"][0] - 1, r["objpos"][1] + 15 * r["scale_provided"] - 1))
    assert a.scale == pytest.approx(1.25 * r["scale_provided"])
    assert a.head_size is None


def test_mpii_json_matches_h5(mpii_h5: Path, mpii_gz: Path) -> None:
    """valid.h5 and the JSON's validation rows are the same people in the same order: the h5's stored
    (pre-adjusted) crop equals the JSON's raw crop adjusted here, and the joints agree (the h5 stores
    integers: upper neck and head top, non-integer in MPII, are truncated, so a head top at
    0 < x or y < 1 becomes 0 there and reads as unlabelled)."""
    h5, js = load_mpii(mpii_h5), load_mpii(mpii_gz, "valid")
    assert [a.image.name for a in h5.items] == [a.image.name for a in js.items]
    np.testing.assert_allclose([a.center for a in h5.items], [a.center for a in js.items], atol=0.01)
    np.testing.assert_allclose([a.scale for a in h5.items], [a.scale for a in js.items], atol=1e-3)
    jh, jj = stacked(h5), stacked(js)
    differ = jh[..., 2] != jj[..., 2]
    assert 0 < differ.sum() <= 5
    assert (jh[differ, 2] == 0).all() and (jh[differ, :2].min(-1) == -1).all()
    assert ((jj[differ, :2].min(-1) > -1) & (jj[differ, :2].min(-1) < 0)).all()
    labelled = jh[..., 2] > 0
    diff = np.abs(jh[..., :2] - jj[..., :2]).max(-1)
    assert diff[labelled].max() <= 1.0  # truncation toward zero, in float32
    others = labelled.copy()
    others[:, [8, 9]] = False
    assert diff[others].max() == 0


def test_test_mpii_json(test_mpii: Path, mpii_h5: Path) -> None:
    raw = json.loads(test_mpii.read_text())
    ds = load_mpii(test_mpii)
    assert len(ds) == 5 and ds.joints is MPII16
    for a in ds.items:
        assert a.image.is_file(), a.image
    for r, a in zip(raw, ds.items, strict=True):
        assert a.image.name == r["image"]
        xy = np.array(r["joints"])
        np.testing.assert_allclose(a.joints[:, :2], xy - 1, atol=1e-4)
        np.testing.assert_array_equal(a.joints[:, 2], np.array(r["joints_vis"]) * (xy > 0).all(-1))
        assert a.center == pytest.approx((r["center"][0] - 1, r["center"][1] + 15 * r["scale"] - 1))
        assert a.scale == pytest.approx(1.25 * r["scale"])
    # rows 2 and 3 lack both ankles (-1, -1 in the file)
    assert ds.items[2].joints[[0, 5], 2].tolist() == [0, 0]
    # the five are the first rows of valid.h5: same crop
    h5 = load_mpii(mpii_h5).items[:5]
    assert [a.image.name for a in h5] == [a.image.name for a in ds.items]
    np.testing.assert_allclose([a.center for a in h5], [a.center for a in ds.items], atol=1e-3)
    with pytest.raises(DatasetError, match="no isValidation marks"):
        load_mpii(test_mpii, "valid")


def test_mpii_h5_images_of_the_first_rows_exist(mpii_h5: Path) -> None:
    for a in load_mpii(mpii_h5).items[:5]:
        assert a.image.is_file(), a.image


# --- FLIC ---------------------------------------------------------------------------------------


def test_flic_items_and_mapping(flic: Path) -> None:
    train, valid, both = load_flic(flic, "train"), load_flic(flic / "valid.h5"), load_flic(flic)
    assert (len(train), len(valid), len(both)) == (3987, 1016, 5003)
    assert train.joints is LSP14 and both.joints is LSP14
    raw = h5_arrays(flic / "train.h5")
    a = train.items[0]
    assert a.image == flic / raw["imgname"][0].decode()
    for name, xy in zip(FLIC11, raw["part"][0], strict=True):
        if name in LSP14.names:
            assert a.joints[LSP14.index(name)].tolist() == pytest.approx([xy[0] - 1, xy[1] - 1, 1.0])
    missing = [LSP14.index(n) for n in ("r_ankle", "r_knee", "l_knee", "l_ankle", "neck", "head_top")]
    assert (stacked(both)[:, missing] == 0).all()
    assert np.isfinite(stacked(both)).all()
    assert a.center == pytest.approx((raw["center"][0][0] - 1, raw["center"][0][1] - 1))
    assert a.scale == pytest.approx(2.2) and a.head_size is None
    # the person's own sides: left shoulder (image right) right of the right shoulder for these frontal shots
    j = stacked(both)
    assert (j[:, LSP14.index("l_shoulder"), 0] > j[:, LSP14.index("r_shoulder"), 0]).mean() > 0.99


def test_flic_visibility_masking(flic: Path) -> None:
    raw = h5_arrays(flic / "train.h5")
    j = stacked(load_flic(flic / "train.h5"))
    # rows 1428, 1429: the right elbow is labelled left of the image (x < 0): visibility 0
    assert (raw["part"][[1428, 1429], 4, 0] < 0).all()
    r_elbow = LSP14.index("r_elbow")
    assert j[[1428, 1429], r_elbow, 2].tolist() == [0, 0]
    assert j[:, [*range(6, 12), 2, 3], 2].sum() == 3987 * 8 - 2


# --- COCO ---------------------------------------------------------------------------------------


def test_coco_items(coco: Path) -> None:
    raw = json.loads(coco.read_text())
    ds = load_coco(coco)
    people = [r for r in raw["annotations"] if r["num_keypoints"] > 0]
    assert len(ds) == len(people) == 12
    assert ds.joints is COCO17
    files = {im["id"]: im["file_name"] for im in raw["images"]}
    for r, a in zip(people, ds.items, strict=True):
        kp = np.array(r["keypoints"], dtype=np.float64).reshape(17, 3)
        assert a.image == coco.parent / files[r["image_id"]]
        np.testing.assert_allclose(a.joints[:, :2], kp[:, :2] - 0.5)
        np.testing.assert_array_equal(a.joints[:, 2], kp[:, 2] > 0)
        x, y, w, h = r["bbox"]
        assert a.center == pytest.approx((x + (w - 1) / 2, y + (h - 1) / 2))
        assert a.scale == pytest.approx(1.25 * max(w, h) / 200)
    # annotation 198196 has joints labelled occluded (v = 1): they count as labelled
    i = [r["id"] for r in people].index(198196)
    kp = np.array(people[i]["keypoints"]).reshape(17, 3)
    assert (kp[:, 2] == 1).sum() == 3 and (ds.items[i].joints[kp[:, 2] == 1, 2] == 1).all()
    assert (ds.items[i].joints[kp[:, 2] == 0, 2] == 0).all()


def test_coco_images_exist(coco: Path) -> None:
    ds = load_coco(coco)
    assert len({a.image for a in ds.items}) == 4
    for a in ds.items:
        assert a.image.is_file(), a.image


# --- LSP ----------------------------------------------------------------------------------------


def test_lsp_small_range(data: Path) -> None:
    from scipy.io import loadmat

    mat = shared_file(data, "lspet/joints.mat")
    ds = open_dataset(f"lsp:{mat.parent}@1-20")
    assert ds.joints is LSP14 and 0 < len(ds) <= 20
    raw = np.asarray(loadmat(mat)["joints"], dtype=np.float64)
    a = ds.items[0]
    n = int(a.image.stem[2:])
    j = raw[:, :, n - 1]
    np.testing.assert_allclose(a.joints[:, :2], j[:, :2] - 1)
    assert ((a.joints[:, 2] > 0) <= (j[:, 2] > 0)).all()
    assert all(a.image.is_file() for a in ds.items)
    assert ds.name == f"lsp:{mat.parent}@1-20"


def test_lsp_range_past_the_end_names_what_the_folder_holds(data: Path) -> None:
    root = shared_file(data, "lspet/joints.mat").parent
    with pytest.raises(DatasetError, match=r"images 9001-10000 asked for, but it holds 9000 \(1-9000\)"):
        open_dataset(f"lsp:{root}@9001-10000")


# --- open_dataset and errors --------------------------------------------------------------------


def test_open_dataset_each_format(data: Path, mpii_h5: Path, test_mpii: Path, flic: Path, coco: Path) -> None:
    cases = {
        f"mpii:{mpii_h5}": 2958,
        f"mpii:{mpii_h5.parent}@valid": 2958,
        f"mpii:{test_mpii}": 5,
        f"mpii:{test_mpii}@all": 5,
        f"flic:{flic}": 5003,
        f"flic:{flic}@valid": 1016,
        f"coco:{coco}": 12,
    }
    for spec, n in cases.items():
        ds = open_dataset(spec)
        assert len(ds) == n, spec
        assert len(open_dataset(ds.name)) == n  # a dataset's name opens it again
    both = open_dataset(f"mpii:{test_mpii} + mpii:{mpii_h5.parent}@valid")  # as --calib-data and --val take two sets
    assert len(both) == 5 + 2958 and both.items[0].image == open_dataset(f"mpii:{test_mpii}").items[0].image
    assert len(open_dataset(both.name)) == len(both)
    with pytest.raises(DatasetError, match="different joint sets"):
        open_dataset(f"mpii:{test_mpii} + flic:{flic}")
    with pytest.raises(DatasetError, match="split must be"):
        open_dataset(f"mpii:{mpii_h5}@1-20")
    with pytest.raises(DatasetError, match="applies to"):
        open_dataset(f"coco:{coco}@train")


@pytest.mark.parametrize("fmt", ["mpii", "flic", "coco", "lsp"])
@pytest.mark.parametrize("name", ["missing.h5", "missing.json", "missing.json.gz", "missing_folder"])
def test_missing_file_raises(fmt: str, name: str, tmp_path: Path) -> None:
    path = tmp_path / name
    with pytest.raises(DatasetError) as e:
        open_dataset(f"{fmt}:{path}")
    msg = str(e.value)
    assert str(path) in msg and "\n" not in msg
    assert "not found" in msg


@pytest.mark.parametrize(
    ("fmt", "name", "content", "problem"),
    [
        ("mpii", "bad.h5", b"not hdf5", "not a readable HDF5 file"),
        ("flic", "bad.h5", b"not hdf5", "not a readable HDF5 file"),
        ("mpii", "bad.json", b"{oops", "not readable JSON"),
        ("mpii", "bad.json.gz", b"not gzip", "not readable JSON"),
        ("mpii", "dict.json", b'{"a": 1}', "expected a JSON list"),
        ("mpii", "rows.json", b'[{"image": "x.jpg"}]', "not an MPII annotation list"),
        ("coco", "bad.json", b"[]", "not a COCO keypoints file"),
        ("coco", "short.json", b'{"images": [], "annotations": [{"num_keypoints": 1, "keypoints": [1]}]}',
         "not a COCO keypoints file"),
    ],
)
def test_unreadable_file_raises(fmt: str, name: str, content: bytes, problem: str, tmp_path: Path) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DatasetError) as e:
        open_dataset(f"{fmt}:{path}")
    msg = str(e.value)
    assert msg.startswith(str(path)) and problem in msg and "\n" not in msg


def test_h5_without_the_layout_raises(tmp_path: Path) -> None:
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(DatasetError, match="no dataset imgname"):
        load_mpii(path)
    with pytest.raises(DatasetError, match="no dataset imgname"):
        load_flic(path)
