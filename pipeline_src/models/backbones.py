"""ResNet18 and VGG16 built as torchvision 0.29 builds them, without importing torchvision.

``import torchvision`` costs 3-5 s per job on a busy 2-core machine (it pulls in torch._dynamo, sympy and
triton); these two networks are a few dozen lines. Module names, construction order and initialisation
calls are torchvision's (``torchvision/models/resnet.py``, ``vgg.py``), so the same seed gives
byte-identical weights and the same state_dict keys, and models trained before this module existed load
unchanged (tests/test_backbones.py compares both with torchvision, tensor for tensor).

ImageNet weights (``pretrained``) are fetched from torchvision's own URLs through ``torch.hub``, which is
what torchvision's ``Weights.get_state_dict`` calls: the same download, hash check and cache file.
"""
from __future__ import annotations

import torch
from torch import nn

# torchvision 0.29's IMAGENET1K_V1 weights (ResNet18_Weights, VGG16_Weights, VGG16_BN_Weights); the
# file names end with the first digits of their sha256, checked by torch.hub (check_hash=True).
WEIGHT_URLS = {
    "resnet18": "https://download.pytorch.org/models/resnet18-f37072fd.pth",
    "vgg16": "https://download.pytorch.org/models/vgg16-397923af.pth",
    "vgg16_bn": "https://download.pytorch.org/models/vgg16_bn-6c64b313.pth",
}
VGG16_CFG: list[int | str] = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


def imagenet_state_dict(name: str) -> dict[str, torch.Tensor]:
    """torchvision's ImageNet weights for ``name`` (a WEIGHT_URLS key): downloaded once into
    $TORCH_HOME/hub/checkpoints, as torchvision does."""
    return torch.hub.load_state_dict_from_url(WEIGHT_URLS[name], progress=True, check_hash=True)


def skip_draws(n: int, chunk: int = 1 << 22) -> None:
    """Advance torch's global CPU generator by ``n`` 32-bit draws without computing anything from them.

    ``uniform_`` on float32 and ``normal_`` on a contiguous float32 tensor whose size is a multiple of 16
    each take one draw per element from the generator; ``random_`` on uint8 takes one too and is about
    twice as fast. Used for layers that torchvision initialises and our model then discards."""
    buf = torch.empty(min(n, chunk), dtype=torch.uint8, device="cpu")
    while n >= chunk:
        buf.random_()
        n -= chunk
    if n:
        buf[:n].random_()


# ----------------------------------------------------------------------------- ResNet18


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)); torchvision's attribute order (it sets the
    order of ``modules()``, hence of the initialisation)."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class ResNet18(nn.Module):
    """torchvision's ``resnet18(num_classes=...)``: stem, four stages of two BasicBlocks, pool, fc."""

    def __init__(self, num_classes: int = 1000, init_weights: bool = True) -> None:
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(64, 2)
        self.layer2 = self._make_layer(128, 2, stride=2)
        self.layer3 = self._make_layer(256, 2, stride=2)
        self.layer4 = self._make_layer(512, 2, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512, num_classes)
        if init_weights:
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                elif isinstance(m, nn.BatchNorm2d):
                    nn.init.constant_(m.weight, 1)
                    nn.init.constant_(m.bias, 0)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes:  # built before the block, as torchvision does
            downsample = nn.Sequential(conv1x1(self.inplanes, planes, stride), nn.BatchNorm2d(planes))
        layers = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [BasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


# ----------------------------------------------------------------------------- VGG16


def vgg_features(cfg: list[int | str], batch_norm: bool) -> nn.Sequential:
    """torchvision's ``vgg.make_layers``: 3x3 convs (with bias), optional BN, ReLU; "M" = 2x2 max pool."""
    layers: list[nn.Module] = []
    in_channels = 3
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            conv = nn.Conv2d(in_channels, int(v), kernel_size=3, padding=1)
            layers += [conv, nn.BatchNorm2d(int(v)), nn.ReLU(inplace=True)] if batch_norm else [conv, nn.ReLU(inplace=True)]
            in_channels = int(v)
    return nn.Sequential(*layers)


def _classifier(num_classes: int, dropout: float = 0.5) -> nn.Sequential:
    return nn.Sequential(nn.Linear(512 * 7 * 7, 4096), nn.ReLU(True), nn.Dropout(p=dropout),
                         nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(p=dropout),
                         nn.Linear(4096, num_classes))


class VGG(nn.Module):
    """torchvision's ``VGG(features, num_classes, init_weights)``.

    ``classifier=False`` leaves out the 25088x4096 / 4096x4096 / 4096xK head (``self.classifier`` is None)
    for models that replace it with a pooled head at small inputs: its ~120 M weights would be built and
    initialised only to be discarded. With ``init_weights`` the global generator is still advanced exactly
    as building and initialising them would (``skip_draws``), so every weight built after it is what it
    was with torchvision's VGG; without (weights loaded from a file next) nothing is drawn.
    """

    def __init__(self, features: nn.Sequential, num_classes: int = 1000, init_weights: bool = True,
                 classifier: bool = True) -> None:
        super().__init__()
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        shapes = [(4096, 512 * 7 * 7), (4096, 4096), (num_classes, 4096)]  # the head's Linear layers
        if classifier:
            self.classifier: nn.Sequential | None = _classifier(num_classes)
        else:
            self.classifier = None
            if init_weights:  # nn.Linear's reset_parameters: uniform_ on the weight, then on the bias
                skip_draws(sum(o * i + o for o, i in shapes))
        if init_weights:
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                    if m.bias is not None:
                        nn.init.constant_(m.bias, 0)
                elif isinstance(m, nn.BatchNorm2d):
                    nn.init.constant_(m.weight, 1)
                    nn.init.constant_(m.bias, 0)
                elif isinstance(m, nn.Linear):
                    nn.init.normal_(m.weight, 0, 0.01)
                    nn.init.constant_(m.bias, 0)
            if not classifier:  # normal_ on each weight (sizes are multiples of 16: one draw per element)
                skip_draws(sum(o * i for o, i in shapes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.classifier is None:
            raise RuntimeError("this VGG was built without its classifier")
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))

