"""The tables `compare.py` prints: speed per clip with our ratio to each peer, and accuracy per dataset and
protocol. Pure formatting of measured figures, kept apart from running the peers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from streampose.joints import LIMBS12
from train.evaluate import Report

PROTOCOLS = {"crop": "crop given", "full": "full image", "small": "small"}
"""Accuracy protocols: name -> how tables head them."""


def align(cells: Sequence[Sequence[str]]) -> list[str]:
    """Rows of cells as aligned lines: the first column left, the others right, a rule under the heading."""
    widths = [max(len(r[i]) for r in cells) for i in range(len(cells[0]))]
    lines = [r[0].ljust(widths[0]) + "".join(f"  {v:>{w}}" for v, w in zip(r[1:], widths[1:], strict=True))
             for r in cells]
    return [lines[0], "-" * len(lines[0]), *lines[1:]]


@dataclass
class Row:
    """One model's line in the speed table: median fps per clip (clip name -> fps)."""

    model: str
    fps: dict[str, float] = field(default_factory=dict)


def ratio(ours: float | None, peer: float | None) -> float | None:
    """ours / peer, where both are known and the peer's is positive."""
    return ours / peer if ours is not None and peer else None


def format_speed(rows: Sequence[Row], clips: Sequence[str]) -> str:
    """The speed table. The first row is ours; each peer's fps cell adds `(ours / peer)`."""
    if not rows or not clips:
        return ""
    ours = rows[0]
    cells = [["model", *(f"{c} fps" for c in clips)]]
    for k, row in enumerate(rows):
        line = [row.model]
        for c in clips:
            fps = row.fps.get(c)
            r = ratio(ours.fps.get(c), fps) if k else None
            line.append("-" if fps is None else f"{fps:.1f}" + (f" ({r:.2f}x)" if r is not None else ""))
        cells.append(line)
    return "\n".join([*align(cells), "(Nx) = ours / that model, same clip, medians of alternating rounds"])


@dataclass
class Score:
    """A model's LSP report on one dataset under one protocol, and in how many of `of` images (or crops) it
    found a person (None where it is not asked to: ours given the crop)."""

    report: Report
    found: int | None = None
    of: int = 0

    def to_json(self, limbs_only: bool) -> dict[str, Any]:
        """The figures; `limbs_only` leaves out neck, head top and their mean (always missed by a peer)."""
        per_joint = self.report.per_joint
        out: dict[str, Any] = {"limbs": self.report.limbs,
                               "per_joint": {n: per_joint[n] for n in LIMBS12} if limbs_only else per_joint}
        if not limbs_only:
            out["all"] = self.report.all
        if self.found is not None:
            out.update(person_found=self.found, of=self.of)
        return {**out, **self.report.extra}


@dataclass
class Accuracy:
    """One model's line in a dataset's accuracy table: protocol name -> its score."""

    model: str
    scores: dict[str, Score] = field(default_factory=dict)


def format_accuracy(title: str, rows: Sequence[Accuracy], protocols: Sequence[str]) -> str:
    """One dataset's accuracy table: PCK limbs and persons found per protocol, a row per model (ours first)."""
    if not rows or not protocols:
        return ""
    first = rows[0].scores[protocols[0]].report
    cells = [["model", *(h for p in protocols for h in (PROTOCOLS[p], "found"))]]
    for row in rows:
        line = [row.model]
        for p in protocols:
            s = row.scores.get(p)
            line.append("-" if s is None else f"{100 * s.report.limbs:.1f} %")
            line.append("-" if s is None or s.found is None else f"{s.found}/{s.of}")
        cells.append(line)
    head = (f"{title}: {first.metric}, 12 limb joints, {first.images} images scored ({first.skipped} skipped: "
            "torso unlabelled)")
    return "\n".join([head, *align(cells)])


def footnote(ours: Accuracy, detector: str, crop_px: int, context: float, small: int) -> str:
    """How the accuracy tables' models were run, from our row's scores (the protocols it was scored in)."""
    lines = []
    if "crop" in ours.scores:
        side = f" (x{context:g} its side)" if context != 1 else ""
        lines.append(f"crop given: ours with {ours.scores['crop'].report.extra['backend']}; the peers get our crop, "
                     f"resampled to {crop_px} px{side}")
    if "full" in ours.scores:
        lines.append(f"full image: ours with the detector {detector}; each model's most confident person is scored")
    if "small" in ours.scores:
        lines.append(f"small: crop given, every image first shrunk so that the person's crop is {small} px wide and "
                     "enlarged back (a person far from the camera)")
    return "\n".join(lines)
