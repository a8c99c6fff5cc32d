"""MobileNetV2 (Sandler et al., CVPR 2018), the third member of the audit's ensemble surrogate.

The ensemble attacker (issue 16) averages the logits of ResNet18, VGG16 and one architecture of another family;
MobileNetV2 (depthwise-separable inverted residuals, no plain 3x3 stacks, no identity-shortcut basic blocks) is
that family and is cheap enough for the CPU default. Written here rather than taken from torchvision so that a
training job does not import torchvision; the parameter names are torchvision's ``mobilenet_v2`` names, so its
ImageNet weights load unchanged (``pretrained``), and tests/test_audit.py checks both give the same logits.

Split for the embedded auto-encoder like the other archs: encoder = features up to ``decoder_stage``
(stride4: 24 ch at 1/4 resolution, stride8: 32 ch at 1/8, stride16: 96 ch at 1/16), trunk = the remaining
features (f(x) = the 1280-channel final map), head = global average pool + dropout 0.2 + linear.
"""
from __future__ import annotations

from torch import Tensor, nn

from pipeline_src.models.denoising import ModelSpec, register_arch

MOBILENET_STAGES = {"stride4": 4, "stride8": 7, "stride16": 14}  # decoder_stage -> number of feature blocks
# (expansion t, output channels c, repeats n, first stride s): Sandler et al., Table 2
INVERTED_RESIDUALS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                      (6, 320, 1, 1))
LAST_CHANNELS = 1280


def conv_bn_relu6(inp: int, out: int, kernel: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    """Conv (no bias) -> BN -> ReLU6; torchvision's Conv2dNormActivation layout (indices 0, 1, 2)."""
    return nn.Sequential(nn.Conv2d(inp, out, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(out), nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    """1x1 expansion (t > 1) -> 3x3 depthwise -> 1x1 linear projection; identity shortcut when shapes agree."""

    def __init__(self, inp: int, out: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = inp * expand
        self.use_res_connect = stride == 1 and inp == out
        layers: list[nn.Module] = [conv_bn_relu6(inp, hidden, kernel=1)] if expand != 1 else []
        layers += [conv_bn_relu6(hidden, hidden, stride=stride, groups=hidden),
                   nn.Conv2d(hidden, out, 1, bias=False), nn.BatchNorm2d(out)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    """The reference network (width 1.0), with torchvision's module names."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2) -> None:
        super().__init__()
        blocks: list[nn.Module] = [conv_bn_relu6(3, 32, stride=2)]
        inp = 32
        for t, c, n, s in INVERTED_RESIDUALS:
            for i in range(n):
                blocks.append(InvertedResidual(inp, c, s if i == 0 else 1, t))
                inp = c
        blocks.append(conv_bn_relu6(inp, LAST_CHANNELS, kernel=1))
        self.features = nn.Sequential(*blocks)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout), nn.Linear(LAST_CHANNELS, num_classes))
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(nn.functional.adaptive_avg_pool2d(self.features(x), 1).flatten(1))


def _split_mobilenetv2(spec: ModelSpec, init: bool = True) -> tuple[nn.Sequential, nn.Sequential, nn.Module, int, int]:
    """``init`` False (weights loaded next) would only save time: MobileNetV2 is small, it always initialises."""
    if spec.decoder_stage not in MOBILENET_STAGES:
        raise ValueError(f"decoder_stage for mobilenetv2 must be one of {tuple(MOBILENET_STAGES)}, "
                         f"got {spec.decoder_stage!r}")
    net = MobileNetV2(num_classes=1000 if spec.pretrained else spec.num_classes)
    if spec.pretrained:
        from torchvision.models import MobileNet_V2_Weights  # only for the download

        net.load_state_dict(MobileNet_V2_Weights.IMAGENET1K_V1.get_state_dict(progress=True))
        net.classifier[-1] = nn.Linear(LAST_CHANNELS, spec.num_classes)
    k = MOBILENET_STAGES[spec.decoder_stage]
    encoder = nn.Sequential(*list(net.features)[:k])
    trunk = nn.Sequential(*list(net.features)[k:])
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1), net.classifier)
    enc_channels = [m for m in encoder.modules() if isinstance(m, nn.BatchNorm2d)][-1].num_features
    return encoder, trunk, head, enc_channels, {"stride4": 4, "stride8": 8, "stride16": 16}[spec.decoder_stage]


register_arch("mobilenetv2", _split_mobilenetv2)
