"""Example consumer: a joint angle, live, from a running `streampose run`.

    streampose run 0 &                                  # webcam, publishing on tcp://127.0.0.1:5555
    python tools/joint_angle.py --joint r_elbow         # prints the right elbow angle per frame

The angle at a joint is between the segments to its two neighbours in the skeleton (elbow: to the
shoulder and the wrist). Frames where any of the three joints is below --min-conf print `-`.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import numpy.typing as npt

from streampose.joints import get_joint_set
from streampose.subscriber import Subscriber
from streampose.wire import PoseMessage

# the joint whose angle is measured -> its two neighbours, by name (LSP14 and MPII16 share these names)
ANGLES = {
    "r_elbow": ("r_shoulder", "r_wrist"), "l_elbow": ("l_shoulder", "l_wrist"),
    "r_knee": ("r_hip", "r_ankle"), "l_knee": ("l_hip", "l_ankle"),
    "r_shoulder": ("r_hip", "r_elbow"), "l_shoulder": ("l_hip", "l_elbow"),
    "r_hip": ("r_shoulder", "r_knee"), "l_hip": ("l_shoulder", "l_knee"),
}


def angle(a: npt.ArrayLike, b: npt.ArrayLike, c: npt.ArrayLike) -> float:
    """The angle ABC in degrees (0..180) between the segments B->A and B->C."""
    u, v = np.asarray(a, float) - np.asarray(b, float), np.asarray(c, float) - np.asarray(b, float)
    cos = np.dot(u, v) / max(np.linalg.norm(u) * np.linalg.norm(v), 1e-9)
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


def joint_angle(kp: npt.ArrayLike, joints: str, joint: str, min_conf: float = 0.3) -> float | None:
    """The angle at `joint` in one pose ((K, 3) keypoints of the joint set named `joints`), or None where a
    joint involved is not confident."""
    names = get_joint_set(joints)
    idx = [names.index(n) for n in (ANGLES[joint][0], joint, ANGLES[joint][1])]
    pts = np.asarray(kp)[idx]
    if (pts[:, 2] < min_conf).any():
        return None
    return angle(pts[0, :2], pts[1, :2], pts[2, :2])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Print a joint angle for every pose a `streampose run` publishes.")
    p.add_argument("endpoint", nargs="?", default="tcp://127.0.0.1:5555", help="default: %(default)s")
    p.add_argument("--joint", default="r_elbow", choices=sorted(ANGLES), help="default: %(default)s")
    p.add_argument("--stream", help="only this stream id")
    p.add_argument("--min-conf", type=float, default=0.3, help="default: %(default)s")
    p.add_argument("--timeout", type=float, default=10.0, help="stop after this many idle seconds")
    args = p.parse_args(argv)
    n = 0
    with Subscriber(args.endpoint, streams=[args.stream] if args.stream else None, timeout=args.timeout,
                    latest=True) as sub:
        for msg in sub:
            if isinstance(msg, PoseMessage):
                n += 1
                if not msg.people:
                    print(f"{msg.stream} frame {msg.frame:<6} no one", flush=True)
                for person in msg.people:  # wire v2: every person of the frame (v1: one)
                    a = joint_angle(person.kp, msg.joints, args.joint, args.min_conf)
                    print(f"{msg.stream} frame {msg.frame:<6} person {person.id:<3} {args.joint} "
                          f"{'-' if a is None else f'{a:5.1f}'}", flush=True)
    if not n:
        print(f"joint_angle: no poses from {args.endpoint} within {args.timeout:g} s", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
