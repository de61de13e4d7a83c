"""Joint sets as data: names, limb edges, left/right flip permutation, draw colours, mappings.

Left and right are the person's own. Nothing else in streampose branches on a joint set's
identity: code reads these tables.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

BGR = tuple[int, int, int]

# Draw colours (BGR) by side of the body: the person's left, right, and the centre line.
LEFT: BGR = (255, 128, 0)
RIGHT: BGR = (0, 128, 255)
CENTER: BGR = (0, 220, 0)


@dataclass(frozen=True)
class JointSet:
    name: str
    names: tuple[str, ...]
    edges: tuple[tuple[int, int], ...]
    flip: tuple[int, ...]
    """flip[i] is the joint that joint i becomes in a horizontally mirrored image."""

    def __len__(self) -> int:
        return len(self.names)

    def index(self, joint: str) -> int:
        return self.names.index(joint)

    def side(self, joint: int) -> BGR:
        """Draw colour of a joint: by the side of the body it belongs to."""
        n = self.names[joint]
        return LEFT if n.startswith("l_") else RIGHT if n.startswith("r_") else CENTER

    @property
    def edge_colors(self) -> tuple[BGR, ...]:
        """One colour per edge: a limb is coloured by its side (centre if it crosses the body)."""
        out = []
        for a, b in self.edges:
            ca, cb = self.side(a), self.side(b)
            out.append(ca if ca == cb else CENTER)
        return tuple(out)

    @property
    def joint_colors(self) -> tuple[BGR, ...]:
        return tuple(self.side(i) for i in range(len(self)))


LSP14 = JointSet(
    name="LSP14",
    names=(
        "r_ankle", "r_knee", "r_hip", "l_hip", "l_knee", "l_ankle",
        "r_wrist", "r_elbow", "r_shoulder", "l_shoulder", "l_elbow", "l_wrist",
        "neck", "head_top",
    ),
    edges=(
        (0, 1), (1, 2), (3, 4), (4, 5), (2, 3),
        (6, 7), (7, 8), (9, 10), (10, 11), (8, 12), (9, 12), (12, 13),
        (2, 8), (3, 9),
    ),
    flip=(5, 4, 3, 2, 1, 0, 11, 10, 9, 8, 7, 6, 12, 13),
)

MPII16 = JointSet(
    name="MPII16",
    names=(
        "r_ankle", "r_knee", "r_hip", "l_hip", "l_knee", "l_ankle",
        "pelvis", "thorax", "upper_neck", "head_top",
        "r_wrist", "r_elbow", "r_shoulder", "l_shoulder", "l_elbow", "l_wrist",
    ),
    edges=(
        (0, 1), (1, 2), (2, 6), (3, 6), (3, 4), (4, 5),
        (6, 7), (7, 8), (8, 9),
        (10, 11), (11, 12), (12, 7), (13, 7), (13, 14), (14, 15),
    ),
    flip=(5, 4, 3, 2, 1, 0, 6, 7, 8, 9, 15, 14, 13, 12, 11, 10),
)

COCO17 = JointSet(
    name="COCO17",
    names=(
        "nose", "l_eye", "r_eye", "l_ear", "r_ear",
        "l_shoulder", "r_shoulder", "l_elbow", "r_elbow", "l_wrist", "r_wrist",
        "l_hip", "r_hip", "l_knee", "r_knee", "l_ankle", "r_ankle",
    ),
    edges=(
        (15, 13), (13, 11), (16, 14), (14, 12), (11, 12),
        (5, 11), (6, 12), (5, 6), (5, 7), (6, 8), (7, 9), (8, 10),
        (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
    ),
    flip=(0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15),
)

PERSON = JointSet(name="PERSON", names=("person",), edges=(), flip=(0,))
"""A detector's classes, kept like a joint set: its one centre heatmap is the person's box centre
(`HourglassConfig.head == "centernet"`), which a mirror leaves a person."""

JOINT_SETS: dict[str, JointSet] = {s.name: s for s in (LSP14, MPII16, COCO17, PERSON)}

# Joints that correspond across sets although their names differ. Joints with the same name
# (the twelve limb joints everywhere, head_top in LSP and MPII) correspond as they are.
# LSP's "neck" is annotated where MPII puts "upper_neck" (the top of the neck, under the chin).
# Deliberately absent: COCO has no neck or head top, and MPII's pelvis and thorax are
# midpoints that LSP and COCO do not label.
ALIASES: dict[frozenset[str], tuple[str, str]] = {
    frozenset({"LSP14", "MPII16"}): ("neck", "upper_neck"),
}

LIMBS12 = (
    "r_ankle", "r_knee", "r_hip", "l_hip", "l_knee", "l_ankle",
    "r_wrist", "r_elbow", "r_shoulder", "l_shoulder", "l_elbow", "l_wrist",
)
"""The twelve limb joints every set shares; PCK "limbs" averages over these."""


def get_joint_set(name: str | JointSet) -> JointSet:
    if isinstance(name, JointSet):
        return name
    try:
        return JOINT_SETS[name]
    except KeyError:
        raise ValueError(f"unknown joint set {name!r}; known: {', '.join(JOINT_SETS)}") from None


def correspondence(src: JointSet | str, dst: JointSet | str) -> dict[int, int]:
    """Index pairs {src_index: dst_index} of joints that are the same body point in both sets."""
    s, d = get_joint_set(src), get_joint_set(dst)
    alias = ALIASES.get(frozenset({s.name, d.name}))
    rename = {}
    if alias is not None:
        a, b = alias
        rename = {a: b, b: a}
    pairs = {}
    for i, n in enumerate(s.names):
        for cand in (n, rename.get(n)):
            if cand is not None and cand in d.names:
                pairs[i] = d.index(cand)
                break
    return pairs


def map_joints(
    keypoints: npt.NDArray[np.floating], src: JointSet | str, dst: JointSet | str
) -> npt.NDArray[np.float32]:
    """Re-express (..., K_src, C) keypoints in `dst`'s order.

    Joints `dst` has but `src` lacks come out as NaN coordinates with 0 in every later channel
    (confidence or visibility), so they are never mistaken for a detection.
    """
    s, d = get_joint_set(src), get_joint_set(dst)
    kp = np.asarray(keypoints, dtype=np.float32)
    if kp.shape[-2] != len(s):
        raise ValueError(f"expected {len(s)} joints for {s.name}, got shape {kp.shape}")
    out = np.zeros((*kp.shape[:-2], len(d), kp.shape[-1]), dtype=np.float32)
    out[..., :2] = np.nan
    for i, j in correspondence(s, d).items():
        out[..., j, :] = kp[..., i, :]
    return out


def flip_keypoints(keypoints: npt.NDArray[np.floating], joints: JointSet, width: float) -> npt.NDArray[np.float32]:
    """Mirror (..., K, C) keypoints horizontally in an image `width` pixels wide (pixel centres at
    integers) and swap left and right so each row names the same body joint again."""
    kp = np.array(keypoints, dtype=np.float32)[..., list(joints.flip), :]
    kp[..., 0] = (width - 1) - kp[..., 0]
    return kp
