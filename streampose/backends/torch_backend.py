"""The reference backend: eager PyTorch on CPU or CUDA."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch

from streampose.backends.base import Backend, BackendInfo, BackendUnavailable
from streampose.checkpoint import Checkpoint


class TorchBackend(Backend):
    def __init__(self, ckpt: Checkpoint, device: str = "cpu", max_batch: int = 64) -> None:
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendUnavailable("torch backend: CUDA requested but this torch build sees no GPU; use device='cpu'")
        self.device = torch.device(device)
        self.network = ckpt.build().to(self.device)
        if self.device.type == "cpu":
            self.network = self.network.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.info = BackendInfo(
            name="torch",
            input_size=ckpt.config.input_size,
            stride=ckpt.config.stride,
            joints=ckpt.joints,
            normalization=ckpt.normalization,
            max_batch=max_batch,
            precision="fp32",
            device=str(self.device),
        )

    @torch.inference_mode()
    def infer(self, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        self.check_batch(batch)
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device)
        if self.device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        out = self.network(x)
        assert isinstance(out, torch.Tensor)
        return np.ascontiguousarray(out.float().cpu().numpy())
