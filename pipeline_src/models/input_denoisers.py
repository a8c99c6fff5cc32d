"""Input denoisers placed in front of a classifier (paper Table 4): MagNet's Reformer and HGD's DUNET.

    x in [0,1] -> denoiser -> x_hat in [0,1] -> classifier -> logits

Reformer (Meng & Chen 2017, "MagNet"): a pixel-level auto-encoder trained to map noisy images back to
the clean ones (MSE). MagNet's published auto-encoders are made for 28 px MNIST and 32 px CIFAR with 3
filters per layer; ours keeps the layout of its MNIST reformer (conv, average pool, conv, conv,
upsample, conv, conv to the image channels) with ``width`` filters per layer (MagNet: 3) and ReLU
inside (MagNet: sigmoid) so that a few epochs suffice; the output is a sigmoid, so already in [0, 1].

DUNET (Liao et al. 2018, "HGD"): a U-Net whose forward path halves the resolution ``depth`` times and
whose backward path upsamples and fuses the matching forward map (skip connection); a 1x1 convolution
predicts a residual that is added to the input, x_hat = clip(x + r, 0, 1). Liao et al.'s DUNET has 5
levels for 299 px; ``depth`` sets ours (default 3 at 32 px: 32 -> 4 px at the bottom).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
import torch.nn.functional as F

KINDS = ("reformer", "hgd")


@dataclass(frozen=True)
class DenoiserSpec:
    """Everything needed to rebuild a denoiser; stored inside every denoiser file."""
    kind: str  # reformer | hgd
    in_channels: int
    width: int
    depth: int = 1  # hgd: number of halvings; the reformer always pools once (MagNet's layout)

    def to_dict(self) -> dict:
        return asdict(self)


class Reformer(nn.Module):
    """MagNet's MNIST reformer layout at ``width`` filters per layer, sigmoid output."""

    def __init__(self, in_channels: int, width: int) -> None:
        super().__init__()
        conv = lambda i, o: nn.Conv2d(i, o, 3, padding=1)  # noqa: E731 - MagNet: 3x3 everywhere
        self.net = nn.Sequential(
            conv(in_channels, width), nn.ReLU(inplace=True), nn.AvgPool2d(2),
            conv(width, width), nn.ReLU(inplace=True),
            conv(width, width), nn.ReLU(inplace=True), nn.Upsample(scale_factor=2, mode="nearest"),
            conv(width, width), nn.ReLU(inplace=True),
            conv(width, in_channels), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _block(i: int, o: int) -> nn.Sequential:
    """Two (conv 3x3, BN, ReLU): DUNET's C2 unit."""
    return nn.Sequential(nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True),
                         nn.Conv2d(o, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True))


class DUNet(nn.Module):
    """U-Net predicting a residual: x_hat = clip(x + r(x), 0, 1)."""

    def __init__(self, in_channels: int, width: int, depth: int) -> None:
        super().__init__()
        chans = [width * 2 ** min(i, 3) for i in range(depth + 1)]  # doubling, capped at 8 x width
        self.down = nn.ModuleList([_block(in_channels, chans[0])] +
                                  [_block(chans[i], chans[i + 1]) for i in range(depth)])
        self.up = nn.ModuleList([_block(chans[i + 1] + chans[i], chans[i]) for i in reversed(range(depth))])
        self.residual = nn.Conv2d(chans[0], in_channels, 1)
        nn.init.zeros_(self.residual.weight)  # starts as the identity: x_hat = x
        nn.init.zeros_(self.residual.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips, h = [], self.down[0](x)
        for block in self.down[1:]:
            skips.append(h)
            h = block(F.max_pool2d(h, 2))
        for block in self.up:
            skip = skips.pop()
            h = block(torch.cat([F.interpolate(h, size=skip.shape[-2:], mode="nearest"), skip], dim=1))
        return (x + self.residual(h)).clamp(0.0, 1.0)


def build_denoiser(spec: DenoiserSpec) -> nn.Module:
    if spec.kind == "reformer":
        return Reformer(spec.in_channels, spec.width)
    if spec.kind == "hgd":
        return DUNet(spec.in_channels, spec.width, spec.depth)
    raise ValueError(f"unknown denoiser kind {spec.kind!r}; allowed: {', '.join(KINDS)}")


class DenoisedClassifier(nn.Module):
    """The combined defence: every image goes through the denoiser, then the classifier."""

    def __init__(self, denoiser: nn.Module, classifier: nn.Module) -> None:
        super().__init__()
        self.denoiser, self.classifier = denoiser, classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.denoiser(x))
