"""Our ResNet18 / VGG16 (pipeline_src/models/backbones.py) against torchvision 0.29's, which built them before.

For the same seed: the same state_dict keys, the same tensors, the global generator left in the same state
(so everything drawn after the model, like the decoder or the training noise, is the same), and the same
outputs. The reference below is the model code as it was with torchvision, kept verbatim.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from pipeline_src.models import ModelSpec, build_model, model_from_state
from pipeline_src.models.backbones import WEIGHT_URLS, skip_draws
from pipeline_src.models.denoising import RESNET_STAGES, VGG_BLOCKS, Decoder, Normalize

torchvision = pytest.importorskip("torchvision")


class _Reference(nn.Module):
    """DenoisingClassifier as built with torchvision (main before the change); pretrained: ResNet18 only."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.normalize = Normalize(spec.in_channels)
        split = self._split_resnet if spec.arch == "resnet18" else self._split_vgg
        self.encoder, self.trunk, self.head, enc_channels, self.downsample = split(spec)
        self.decoder = Decoder(enc_channels, self.downsample, spec.in_channels, spec.decoder_activation)

    def forward(self, x):
        return self.head(self.trunk(self.encoder(self.normalize(x))))

    @staticmethod
    def _split_resnet(spec):
        net = torchvision.models.resnet18(weights="IMAGENET1K_V1" if spec.pretrained else None)
        if spec.num_classes != net.fc.out_features:
            net.fc = nn.Linear(net.fc.in_features, spec.num_classes)
        k = RESNET_STAGES.index(spec.decoder_stage) + 1
        stages = [net.layer1, net.layer2, net.layer3, net.layer4]
        encoder = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, *stages[:k])
        head = nn.Sequential(net.avgpool, nn.Flatten(1), net.fc)
        return encoder, nn.Sequential(*stages[k:]), head, 64 * 2 ** (k - 1), 4 * 2 ** (k - 1)

    @staticmethod
    def _split_vgg(spec):
        from torchvision.models.vgg import VGG, cfgs, make_layers

        cfg = [v if v == "M" else max(8, int(round(v * spec.vgg_width))) for v in cfgs["D"]]
        features = make_layers(cfg, batch_norm=spec.vgg_batch_norm)
        head_kind = spec.vgg_head if spec.vgg_head != "auto" else ("full" if spec.image_size >= 224 else "pooled")
        net = VGG(features, num_classes=spec.num_classes, init_weights=True)
        k = VGG_BLOCKS.index(spec.decoder_stage) + 1
        pools = [i for i, m in enumerate(net.features) if isinstance(m, nn.MaxPool2d)]
        encoder = nn.Sequential(*list(net.features)[:pools[k - 1] + 1])
        trunk = nn.Sequential(*list(net.features)[pools[k - 1] + 1:])
        last_ch = [v for v in cfg if v != "M"][-1]
        if head_kind == "full":
            head = nn.Sequential(net.avgpool, nn.Flatten(1), net.classifier)
        else:
            head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(last_ch, spec.num_classes))
        m_positions = [i for i, v in enumerate(cfg) if v == "M"]
        return encoder, trunk, head, cfg[m_positions[k - 1] - 1], 2 ** k


def _built(seed: int, make):
    torch.manual_seed(seed)
    model = make()
    return model, torch.get_rng_state()


SPECS = [
    ModelSpec("resnet18", 4, 3, 32, "layer1"),
    ModelSpec("resnet18", 3, 1, 32, "layer2", decoder_activation="tanh"),
    ModelSpec("resnet18", 1000, 3, 64, "layer3"),  # fc kept at 1000 classes: torchvision's own fc
    ModelSpec("vgg16", 4, 3, 32, "block2", vgg_width=0.5),  # the default
    ModelSpec("vgg16", 3, 1, 32, "block1", vgg_width=0.25, vgg_batch_norm=False),
    ModelSpec("vgg16", 4, 3, 64, "block4", vgg_width=0.3, vgg_head="pooled"),
    ModelSpec("vgg16", 7, 3, 32, "block3", vgg_head="full"),  # the 4096-wide head (needs full width)
]


@pytest.mark.parametrize("seed", [0, pytest.param(12345, marks=pytest.mark.heavy)])  # the second seed: `make test`
@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.arch}-{s.decoder_stage}-{s.vgg_width}-{s.vgg_head}-"
                                                      f"bn{int(s.vgg_batch_norm)}-c{s.num_classes}")
def test_same_weights_keys_generator_and_outputs_as_torchvision(spec, seed):
    ours, ours_rng = _built(seed, lambda: build_model(spec))
    ref, ref_rng = _built(seed, lambda: _Reference(spec))
    a, b = ours.state_dict(), ref.state_dict()
    assert list(a) == list(b)
    for key in a:
        assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key
    assert torch.equal(ours_rng, ref_rng)  # what is drawn after the model (noise, shuffling) is unchanged
    x = torch.rand(3, spec.in_channels, spec.image_size, spec.image_size, generator=torch.Generator().manual_seed(seed))
    ours.train(), ref.train()
    torch.manual_seed(seed)  # the full head's dropout draws from the global generator
    train_logits = ours.outputs(x).logits
    torch.manual_seed(seed)
    assert torch.equal(train_logits, ref(x))  # batch statistics
    ours.eval(), ref.eval()
    assert torch.equal(ours(x), ref(x))  # running statistics


def test_skip_draws_advances_the_generator_like_initialising_weights():
    torch.manual_seed(3)
    w = torch.empty(4096, 5000)
    w.uniform_(-1, 1)
    w.normal_(0, 0.01)
    expected = torch.get_rng_state()
    torch.manual_seed(3)
    skip_draws(2 * 4096 * 5000, chunk=1 << 20)
    assert torch.equal(torch.get_rng_state(), expected)


@pytest.mark.parametrize("spec", [SPECS[0], SPECS[3], SPECS[6]], ids=["resnet18", "vgg16", "vgg16-full"])
def test_model_from_state_holds_the_weights_and_draws_nothing(spec):
    torch.manual_seed(0)
    trained = build_model(spec).eval()
    state = trained.state_dict()
    before = torch.get_rng_state()
    loaded = model_from_state(spec, {k: v.clone() for k, v in state.items()}).eval()
    assert torch.equal(torch.get_rng_state(), before)
    assert all(not t.is_meta for t in [*loaded.parameters(), *loaded.buffers()])
    assert all(p.requires_grad for p in loaded.parameters())  # attacks and HGD switch it off themselves
    assert list(loaded.state_dict()) == list(state)
    x = torch.rand(2, spec.in_channels, spec.image_size, spec.image_size)
    assert torch.equal(loaded(x), trained(x))


def test_pretrained_resnet18_reads_torchvisions_cached_file_as_torchvision_did(tmp_path, monkeypatch):
    """No network: a stand-in for the ImageNet file sits where torch.hub (and torchvision) cache it."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.manual_seed(99)
    torch.save(torchvision.models.resnet18().state_dict(), cache / WEIGHT_URLS["resnet18"].rsplit("/", 1)[1])
    spec = ModelSpec("resnet18", 4, 3, 32, "layer1", pretrained=True)
    ours, ours_rng = _built(5, lambda: build_model(spec))
    ref, ref_rng = _built(5, lambda: _Reference(spec))
    a, b = ours.state_dict(), ref.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert torch.equal(ours_rng, ref_rng)
    stand_in = torch.load(cache / WEIGHT_URLS["resnet18"].rsplit("/", 1)[1])
    assert torch.equal(a["encoder.0.weight"], stand_in["conv1.weight"])  # the file's weights, not a fresh init


def test_weight_urls_are_torchvisions():
    from torchvision.models import ResNet18_Weights, VGG16_BN_Weights, VGG16_Weights

    assert WEIGHT_URLS == {"resnet18": ResNet18_Weights.IMAGENET1K_V1.url, "vgg16": VGG16_Weights.IMAGENET1K_V1.url,
                           "vgg16_bn": VGG16_BN_Weights.IMAGENET1K_V1.url}

