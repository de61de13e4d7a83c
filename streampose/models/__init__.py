"""The named models streampose knows, and where their shipped weights live.

A name is a configuration (what `load_model(name, pretrained=False)` builds) plus, once trained,
`<name>.pt` (the checkpoint) and `<name>.json` (its model card) in this folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from streampose.joints import LSP14, PERSON, JointSet
from streampose.model import HourglassConfig

HERE = Path(__file__).parent


@dataclass(frozen=True)
class Preset:
    config: HourglassConfig
    joints: JointSet
    summary: str

    def weights(self, name: str) -> Path:
        return HERE / f"{name}.pt"

    def int8(self, name: str) -> Path:
        """The OpenVINO int8 engine built from the shipped weights, where one ships: it needs calibration data a
        user does not have (`streampose build NAME --target openvino --precision int8 -o models/NAME-int8.xml`)."""
        return HERE / f"{name}-int8.xml"


_K = len(LSP14)
PRESETS: dict[str, Preset] = {
    "hg2-lite": Preset(HourglassConfig(stacks=2, features=128, joints=_K, input_size=128), LSP14,
                       "2-stack hourglass, 128 features, 128 px: real-time on CPU (the default)"),
    # the paper's width at 192 px, not its 256 px: a 256-px epoch costs 22 min on the 2 CPU cores it is trained
    # on (6.5 img/s), a 192-px one 10 min; `streampose train --config hg2 --input-size 256` trains the paper's size
    "hg2": Preset(HourglassConfig(stacks=2, features=256, joints=_K, input_size=192), LSP14,
                  "the paper's 2-stack, 256-feature hourglass at 192 px: more accurate on whole images, 6x the work "
                  "of hg2-lite"),
    # finds people in whole frames: CenterNet heads on a 2-stack hourglass, the frame letterboxed to 256 px,
    # with a narrow stem (the stem at full resolution would be most of the work)
    "person-det": Preset(HourglassConfig(stacks=2, features=64, joints=1, input_size=256, stem=32, head="centernet"),
                         PERSON, "person detector: 2-stack hourglass, CenterNet heads, the whole frame letterboxed"),
}
DEFAULT = "hg2-lite"
DETECTOR = "person-det"


def shipped() -> list[str]:
    """Names whose trained weights are installed."""
    return [name for name, p in PRESETS.items() if p.weights(name).is_file()]
