"""Where the work runs: the GPU when CUDA is present (bf16 autocast, channels_last, uint8 data on the
device), else the CPU path exactly as before (results on CPU stay byte-identical).

Only train.py, evaluate.py, adversarial.py, whitebox.py and denoisers.py call these; nothing here touches CUDA unless it is available,
so importing it on a CPU-only machine is safe.
"""
from __future__ import annotations

import contextlib

import torch


def compute_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def is_gpu(device: torch.device) -> bool:
    return device.type == "cuda"


def setup_gpu() -> None:
    """Fast kernels where exactness across runs is not promised anyway (GPU results are not byte-stable)."""
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True


def place_model(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """On the GPU: channels_last weights (tensor cores read NHWC); on the CPU: unchanged."""
    if is_gpu(device):
        return model.to(device, memory_format=torch.channels_last)
    return model


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on the GPU (no loss scaling needed, unlike fp16); nothing on the CPU."""
    if is_gpu(device):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def normalise_u8(images_u8: torch.Tensor) -> torch.Tensor:
    """uint8 [N, C, H, W] already on the GPU -> float in [0, 1], channels_last, normalised there
    (the host never sees a float copy of the dataset)."""
    return images_u8.float().div_(255.0).contiguous(memory_format=torch.channels_last)


class Bf16Inference(torch.nn.Module):
    """A GPU model seen by attacks and evaluation: channels_last input, bf16 autocast inside, fp32 logits
    out, so the attacks' own arithmetic (perturbations, margins, C&W's optimiser) stays in fp32."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            return self.model(x.contiguous(memory_format=torch.channels_last)).float()


def inference_model(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """The CPU model unchanged; on the GPU, placed there (channels_last) and wrapped in Bf16Inference."""
    if not is_gpu(device):
        return model
    setup_gpu()
    return Bf16Inference(place_model(model, device)).eval()
