"""The training curve as a PNG: loss and validation against steps, for a run's folder and the README."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot_curve(log: list[dict[str, Any]], path: Path, title: str) -> None:
    """Training loss and validation PCK against steps, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tr = [e for e in log if e["kind"] == "train"]
    va = [e for e in log if e["kind"] == "val"]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    if tr:
        ax.plot([e["step"] for e in tr], [e["loss"] for e in tr], color="tab:blue", lw=1)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (all stacks)", color="tab:blue")
    ax.set_yscale("log")
    if va:
        ax2 = ax.twinx()
        detector = "recall" in va[0]
        a, b = ("recall", "mean_iou") if detector else ("limbs", "all")
        ax2.plot([e["step"] for e in va], [100 * e[a] for e in va], "o-", color="tab:red", label=a)
        ax2.plot([e["step"] for e in va], [100 * e[b] for e in va], "s--", color="tab:orange",
                 label="mean IoU x 100" if detector else b)
        ax2.set_ylabel("validation top-1 recall@0.5 (%)" if detector else "validation PCK@0.2 (%)", color="tab:red")
        ax2.legend(loc="lower right")
    ax.set_title(f"{title} training")
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)
