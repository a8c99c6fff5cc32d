"""A ResNet18 or VGG16 classifier (torchvision's layout, built by ``backbones.py``) whose low-to-middle
layers double as the encoder of an auto-encoder.

    x in [0,1] -> normalise -> encoder (stem .. decoder_stage) -> rest of the conv stages -> f(x) -> head -> logits
                                  \\-> decoder -> x_hat (reconstruction of the clean image)

The classifier always reads the original image; the decoder only adds the training signal L_a
(paper section 2.2). ``forward`` returns logits, so attacks and evaluation treat the model as a
plain classifier; ``outputs`` returns (logits, f(x), x_hat) for training.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
from torch import nn
from pipeline_src.models.backbones import VGG, VGG16_CFG, ResNet18, imagenet_state_dict, vgg_features

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESNET_STAGES = ("layer1", "layer2", "layer3")
VGG_BLOCKS = ("block1", "block2", "block3", "block4")
VGG_FEATURES = ("last_conv", "last_pool")


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild the network; stored inside every checkpoint."""
    arch: str
    num_classes: int
    in_channels: int
    image_size: int
    decoder_stage: str
    decoder_activation: str = "sigmoid"
    vgg_head: str = "auto"
    vgg_width: float = 1.0
    vgg_batch_norm: bool = True
    pretrained: bool = False
    vgg_feature: str | None = None  # vgg16's f(x): last_conv (None: the paper) or last_pool

    def to_dict(self) -> dict:
        out = asdict(self)
        if out["vgg_feature"] is None:  # older files have no such key: keep their bytes
            del out["vgg_feature"]
        return out


class Outputs(NamedTuple):
    logits: torch.Tensor
    features: torch.Tensor  # f(x): output of the final conv stage (VGG16: see ModelSpec.vgg_feature)
    reconstruction: torch.Tensor | None


class Normalize(nn.Module):
    """[0,1] pixels -> ImageNet-normalised 3-channel input; grayscale is repeated to 3 channels."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.in_channels == 1:
            x = x.expand(-1, 3, -1, -1)
        return (x - self.mean) / self.std


class Decoder(nn.Module):
    """Upsamples the encoder's feature map back to the image: one (deconv, BN, ReLU) per factor of 2."""

    def __init__(self, in_features: int, downsample: int, out_channels: int, activation: str) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        ch = in_features
        for _ in range(int(downsample).bit_length() - 1):
            nxt = max(ch // 2, 16)
            layers += [nn.ConvTranspose2d(ch, nxt, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(nxt),
                       nn.ReLU(inplace=True)]
            ch = nxt
        layers += [nn.Conv2d(ch, out_channels, 3, padding=1), nn.Sigmoid() if activation == "sigmoid" else nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


def _split_resnet(spec: ModelSpec, init: bool = True) -> tuple[nn.Sequential, nn.Sequential, nn.Module, int, int]:
    net = ResNet18(num_classes=1000, init_weights=init)  # torchvision's resnet18(): 1000 classes, fc replaced below
    if spec.pretrained:
        net.load_state_dict(imagenet_state_dict("resnet18"))
    if spec.num_classes != net.fc.out_features:
        net.fc = nn.Linear(net.fc.in_features, spec.num_classes)
    if spec.decoder_stage not in RESNET_STAGES:
        raise ValueError(f"decoder_stage for resnet18 must be one of {RESNET_STAGES}, got {spec.decoder_stage!r}")
    k = RESNET_STAGES.index(spec.decoder_stage) + 1
    stages = [net.layer1, net.layer2, net.layer3, net.layer4]
    encoder = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, *stages[:k])
    trunk = nn.Sequential(*stages[k:])
    head = nn.Sequential(net.avgpool, nn.Flatten(1), net.fc)
    enc_channels = 64 * 2 ** (k - 1)
    return encoder, trunk, head, enc_channels, 4 * 2 ** (k - 1)


def _split_vgg(spec: ModelSpec, init: bool = True) -> tuple[nn.Sequential, nn.Sequential, nn.Module, int, int]:
    cfg = [v if v == "M" else max(8, int(round(v * spec.vgg_width))) for v in VGG16_CFG]
    if spec.pretrained and spec.vgg_width != 1.0:
        raise ValueError("pretrained VGG16 weights need vgg_width = 1.0")
    features = vgg_features(cfg, batch_norm=spec.vgg_batch_norm)
    head_kind = spec.vgg_head if spec.vgg_head != "auto" else ("full" if spec.image_size >= 224 else "pooled")
    # The pooled head never uses torchvision's 4096-wide classifier: not built (the generator is advanced
    # as if it were, so the weights are the same as with torchvision's VGG), except to load ImageNet weights.
    net = VGG(features, num_classes=1000 if spec.pretrained else spec.num_classes,
              init_weights=init and not spec.pretrained, classifier=head_kind == "full" or spec.pretrained)
    if spec.pretrained:
        net.load_state_dict(imagenet_state_dict("vgg16_bn" if spec.vgg_batch_norm else "vgg16"))
        net.classifier[-1] = nn.Linear(4096, spec.num_classes)
    if spec.decoder_stage not in VGG_BLOCKS:
        raise ValueError(f"decoder_stage for vgg16 must be one of {VGG_BLOCKS}, got {spec.decoder_stage!r}")
    k = VGG_BLOCKS.index(spec.decoder_stage) + 1
    pools = [i for i, m in enumerate(net.features) if isinstance(m, nn.MaxPool2d)]
    cut = pools[k - 1] + 1
    encoder = nn.Sequential(*list(net.features)[:cut])
    trunk = nn.Sequential(*list(net.features)[cut:])
    last_ch = [v for v in cfg if v != "M"][-1]
    if head_kind == "full":
        head = nn.Sequential(net.avgpool, nn.Flatten(1), net.classifier)
    else:  # at small inputs the final map is 1x1: the 25088x4096 layer would only multiply copies of it
        head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(last_ch, spec.num_classes))
    m_positions = [i for i, v in enumerate(cfg) if v == "M"]
    enc_channels = cfg[m_positions[k - 1] - 1]
    return encoder, trunk, head, enc_channels, 2 ** k


# arch -> split(spec) = (encoder, trunk, head, encoder channels, encoder downsampling). An arch defined in its own
# file registers itself here (pipeline_src/models/mobilenet.py); models/__init__.py imports those files.
ARCHS: dict[str, Callable[[ModelSpec], tuple[nn.Sequential, nn.Sequential, nn.Module, int, int]]] = {
    "resnet18": _split_resnet, "vgg16": _split_vgg}


def register_arch(name: str, split: Callable[[ModelSpec], tuple[nn.Sequential, nn.Sequential, nn.Module, int, int]]
                  ) -> None:
    ARCHS[name] = split


class DenoisingClassifier(nn.Module):
    """``init=False``: skip the weight initialisation (the weights are loaded from a file next)."""

    def __init__(self, spec: ModelSpec, init: bool = True) -> None:
        super().__init__()
        self.spec = spec
        if spec.image_size % 32:
            raise ValueError(f"image_size must be a multiple of 32 for {spec.arch}, got {spec.image_size}")
        split = ARCHS.get(spec.arch)
        if split is None:
            raise ValueError(f"unknown arch {spec.arch!r}; allowed: {', '.join(ARCHS)}")
        self.normalize = Normalize(spec.in_channels)
        self.encoder, self.trunk, self.head, enc_channels, self.downsample = split(spec, init)
        self.decoder = Decoder(enc_channels, self.downsample, spec.in_channels, spec.decoder_activation)
        # f(x) = trunk[:feature_end](z). The paper's f is "the output of the final convolutional layer"; VGG's
        # trunk ends with a max-pool after it, which last_conv leaves out of f(x) (it still feeds the head).
        self.feature_end = len(self.trunk)
        if spec.arch == "vgg16":
            kind = spec.vgg_feature or "last_conv"
            if kind not in VGG_FEATURES:
                raise ValueError(f"model.vgg_feature = {kind!r} is not known; allowed: {', '.join(VGG_FEATURES)}")
            assert isinstance(self.trunk[-1], nn.MaxPool2d)
            self.feature_end = len(self.trunk) - (kind == "last_conv")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits only: the deployed classifier (the decoder is never on the inference path)."""
        return self.head(self.trunk(self.encoder(self.normalize(x))))

    def outputs(self, x: torch.Tensor, reconstruct: bool = True) -> Outputs:
        z = self.encoder(self.normalize(x))
        if self.feature_end == len(self.trunk):
            features = self.trunk(z)
            top = features
        else:  # the same layers as forward(), with f(x) read before the trunk's last module
            features = self.trunk[:self.feature_end](z)
            top = self.trunk[self.feature_end:](features)
        return Outputs(self.head(top), features, self.decoder(z) if reconstruct else None)


def build_model(spec: ModelSpec, init: bool = True) -> DenoisingClassifier:
    return DenoisingClassifier(spec, init)


def model_from_state(spec: ModelSpec, state: dict[str, torch.Tensor]) -> DenoisingClassifier:
    """A model holding ``state``'s tensors: built on the meta device (no memory, no initialisation, no
    draw from the random generator), then given the loaded tensors themselves."""
    with torch.device("meta"):
        model = build_model(spec, init=False)
    model.load_state_dict(state, assign=True)
    return model
