"""Model shapes: logits, f(x) and the decoder's reconstruction at the input's size."""
import pytest
import torch

from pipeline_src.models import ModelSpec, build_model


@pytest.mark.parametrize("arch,stage,width", [("resnet18", "layer1", 1.0), ("resnet18", "layer2", 1.0),
                                               ("vgg16", "block2", 0.25), ("vgg16", "block1", 0.25)])
@pytest.mark.parametrize("channels", [1, 3])
def test_outputs_shapes(arch, stage, width, channels):
    model = build_model(ModelSpec(arch, num_classes=4, in_channels=channels, image_size=32, decoder_stage=stage,
                                  vgg_width=width))
    x = torch.rand(2, channels, 32, 32)
    out = model.outputs(x)
    assert out.logits.shape == (2, 4)
    assert out.features.dim() == 4 and out.features.shape[0] == 2
    assert out.reconstruction.shape == x.shape  # decoder output size = image size
    assert 0 <= out.reconstruction.min() and out.reconstruction.max() <= 1  # sigmoid output
    assert torch.equal(model.eval()(x), model.outputs(x, reconstruct=False).logits)


def test_resnet_decoder_reads_layer1_at_quarter_resolution():
    model = build_model(ModelSpec("resnet18", 3, 3, 64, "layer1"))
    z = model.encoder(model.normalize(torch.rand(1, 3, 64, 64)))
    assert z.shape == (1, 64, 16, 16)
    assert model.downsample == 4


def test_vgg_matching_block_is_quarter_resolution_and_head_is_pooled_when_small():
    model = build_model(ModelSpec("vgg16", 3, 3, 32, "block2", vgg_width=0.25))
    z = model.encoder(model.normalize(torch.rand(1, 3, 32, 32)))
    assert z.shape[-1] == 8
    assert not any(isinstance(m, torch.nn.Dropout) for m in model.head.modules())  # pooled head
    full = build_model(ModelSpec("vgg16", 3, 3, 32, "block2", vgg_width=0.25, vgg_head="full"))
    assert any(isinstance(m, torch.nn.Dropout) for m in full.head.modules())


def test_tanh_decoder_outputs_symmetric_range():
    model = build_model(ModelSpec("resnet18", 2, 1, 32, "layer1", decoder_activation="tanh"))
    rec = model.outputs(torch.rand(4, 1, 32, 32)).reconstruction
    assert rec.min() >= -1 and rec.max() <= 1 and rec.min() < 0


def test_unknown_arch_and_bad_size_are_rejected():
    with pytest.raises(ValueError, match="unknown arch"):
        build_model(ModelSpec("alexnet", 2, 3, 32, "layer1"))
    with pytest.raises(ValueError, match="multiple of 32"):
        build_model(ModelSpec("resnet18", 2, 3, 40, "layer1"))
