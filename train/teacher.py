"""A trained pose model whose heatmaps the model being trained also learns: knowledge distillation, as FPD does
for hourglasses (Zhang et al. CVPR 2019). A teacher's maps are soft where crowd-sourced labels are noisy, and
cover the joints the labels leave out."""

from __future__ import annotations

from pathlib import Path

import torch

from streampose import checkpoint as ck
from streampose import models
from streampose.joints import JointSet
from streampose.model import HourglassConfig


class Teacher:
    """A shipped model's name or a checkpoint, in eval mode, whose heatmaps have the student's joints and shape."""

    def __init__(self, name: str, student: HourglassConfig, joints: JointSet, device: torch.device,
                 bf16: bool = True, channels_last: bool = True) -> None:
        path = models.PRESETS[name].weights(name) if name in models.PRESETS else Path(name)
        c = ck.load(path)
        if (c.joints.name != joints.name or c.config.input_size != student.input_size
                or c.config.stride != student.stride):
            raise ValueError(f"--teacher {name}: predicts {c.joints.name} at {c.config.input_size} px, stride "
                             f"{c.config.stride}; the student needs {joints.name} at {student.input_size} px, "
                             f"stride {student.stride}")
        if c.config.head != "heatmaps":
            raise ValueError(f"--teacher {name}: not a pose model")
        # fp16 files shipped before 2026-12-06 hold an inf running variance where fp32 had > 65504
        c.state_dict = {k: ck.finite(v) if v.is_floating_point() else v for k, v in c.state_dict.items()}
        self.net = c.build().to(device)
        if channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.flip = torch.tensor(joints.flip, device=device)  # left <-> right, joint by joint
        self.device, self.bf16 = device, bf16

    def maps(self, x: torch.Tensor, flip_test: bool = False) -> torch.Tensor:
        """The heatmaps (N, K, h, w) of a batch: the last stack's, or with `flip_test` the flip test's (the mirrored
        crop's maps mirrored back with left and right swapped, averaged in, as `api.submit_heatmaps` does; this is
        `decode.unflip_heatmaps` in torch, so the batch stays on the training device)."""
        with torch.no_grad(), torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            taught = self.net.forward_all(x)[-1].float()
            if flip_test:
                mirrored = self.net.forward_all(x.flip(-1))[-1].float()
                taught = 0.5 * (taught + mirrored[:, self.flip].flip(-1))
        return taught
