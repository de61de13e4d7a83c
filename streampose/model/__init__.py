"""The stacked hourglass model family. `HourglassConfig` is plain data; the network's modules import torch, so they
load on first use (a run on a cached engine never imports torch)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from streampose.model.config import HourglassConfig

if TYPE_CHECKING:
    from streampose.model.hourglass import Hourglass, Residual, StackedHourglass, conv_macs, count_parameters

_NETWORK = ("Hourglass", "Residual", "StackedHourglass", "conv_macs", "count_parameters")


def __getattr__(name: str) -> Any:
    if name in _NETWORK:
        from streampose.model import hourglass

        return getattr(hourglass, name)
    raise AttributeError(f"module 'streampose.model' has no attribute {name!r}")


__all__ = ["Hourglass", "HourglassConfig", "Residual", "StackedHourglass", "conv_macs", "count_parameters"]
