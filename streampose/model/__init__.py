"""The stacked hourglass model family."""

from streampose.model.hourglass import (
    Hourglass,
    HourglassConfig,
    Residual,
    StackedHourglass,
    conv_macs,
    count_parameters,
)

__all__ = ["Hourglass", "HourglassConfig", "Residual", "StackedHourglass", "conv_macs", "count_parameters"]
