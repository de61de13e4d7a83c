from __future__ import annotations

import numpy as np
import pytest

from streampose.joints import (
    COCO17,
    JOINT_SETS,
    LIMBS12,
    LSP14,
    MPII16,
    PERSON,
    JointSet,
    correspondence,
    flip_keypoints,
    get_joint_set,
    map_joints,
)

SETS = list(JOINT_SETS.values())


@pytest.mark.parametrize("js", SETS, ids=lambda s: s.name)
def test_flip_is_an_involution(js: JointSet) -> None:
    flip = np.array(js.flip)
    assert sorted(js.flip) == list(range(len(js)))  # a permutation
    assert (flip[flip] == np.arange(len(js))).all()


@pytest.mark.parametrize("js", SETS, ids=lambda s: s.name)
def test_flip_swaps_left_and_right_by_name(js: JointSet) -> None:
    for i, j in enumerate(js.flip):
        a, b = js.names[i], js.names[j]
        if a.startswith("l_"):
            assert b == "r_" + a[2:]
        elif a.startswith("r_"):
            assert b == "l_" + a[2:]
        else:
            assert i == j


@pytest.mark.parametrize("js", [s for s in SETS if s is not PERSON], ids=lambda s: s.name)
def test_edges_and_colours_are_consistent(js: JointSet) -> None:
    assert len(set(js.names)) == len(js)
    assert all(0 <= a < len(js) and 0 <= b < len(js) and a != b for a, b in js.edges)
    assert len(set(map(frozenset, js.edges))) == len(js.edges)
    assert len(js.edge_colors) == len(js.edges)
    assert len(js.joint_colors) == len(js)
    # every joint is drawn: the skeleton is connected over all joints (COCO's face included)
    touched = {j for e in js.edges for j in e}
    assert touched == set(range(len(js)))
    assert set(LIMBS12) <= set(js.names)


def test_the_detector_class_set_is_one_person_centre() -> None:
    assert PERSON.names == ("person",) and PERSON.flip == (0,) and PERSON.edges == ()
    assert get_joint_set("PERSON") is PERSON


def test_design_orders() -> None:
    assert LSP14.names[:6] == ("r_ankle", "r_knee", "r_hip", "l_hip", "l_knee", "l_ankle")
    assert MPII16.flip == (5, 4, 3, 2, 1, 0, 6, 7, 8, 9, 15, 14, 13, 12, 11, 10)
    assert len(COCO17) == 17 and COCO17.names[0] == "nose"


def test_correspondences() -> None:
    lsp_to_mpii = correspondence(LSP14, MPII16)
    assert len(lsp_to_mpii) == 14  # 12 limbs, head_top, and neck as upper_neck
    assert lsp_to_mpii[LSP14.index("neck")] == MPII16.index("upper_neck")
    assert len(correspondence(COCO17, LSP14)) == 12
    assert len(correspondence(MPII16, COCO17)) == 12
    assert correspondence(MPII16, LSP14) == {v: k for k, v in lsp_to_mpii.items()}


def test_map_joints_round_trip_and_missing() -> None:
    rng = np.random.default_rng(0)
    kp = rng.uniform(0, 100, size=(5, 14, 3)).astype(np.float32)
    mpii = map_joints(kp, "LSP14", "MPII16")
    assert mpii.shape == (5, 16, 3)
    pelvis = MPII16.index("pelvis")
    assert np.isnan(mpii[:, pelvis, :2]).all() and (mpii[:, pelvis, 2] == 0).all()
    np.testing.assert_array_equal(map_joints(mpii, MPII16, LSP14), kp)
    with pytest.raises(ValueError, match="expected 14 joints"):
        map_joints(kp[:, :13], LSP14, MPII16)


def test_flip_keypoints_mirrors_and_relabels() -> None:
    kp = np.zeros((14, 3), np.float32)
    kp[LSP14.index("l_wrist")] = (10, 20, 1)
    out = flip_keypoints(kp, LSP14, width=100)
    np.testing.assert_allclose(out[LSP14.index("r_wrist")], (89, 20, 1))
    np.testing.assert_allclose(flip_keypoints(out, LSP14, width=100), kp)


def test_unknown_joint_set() -> None:
    with pytest.raises(ValueError, match="known: LSP14"):
        get_joint_set("H36M")
