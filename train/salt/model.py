"""Salt segmenter: a U-Net (segmentation_models_pytorch) with a salt/no-salt head,
and the inference wrapper exported to TorchScript."""
from __future__ import annotations

import torch
import torch.nn as nn


def build_unet(encoder: str = "resnet18", encoder_depth: int = 4,
               decoder_channels: tuple[int, ...] = (128, 64, 32, 16)) -> nn.Module:
    """U-Net with a from-scratch ResNet encoder and an image-level classification head.

    Input float (N, 1, 128, 128); returns ``(mask_logits (N, 1, 128, 128), salt_logits (N, 1))``.
    Stages of the encoder deeper than ``encoder_depth`` are unused and removed so the
    checkpoint only carries trained weights.
    """
    import segmentation_models_pytorch as smp

    model = smp.Unet(encoder, encoder_depth=encoder_depth, encoder_weights=None, in_channels=1,
                     classes=1, decoder_channels=decoder_channels,
                     aux_params={"classes": 1, "dropout": 0.2})
    for k in (4, 3, 2):  # layerK is used only when encoder_depth >= K + 1
        if encoder_depth <= k and hasattr(model.encoder, f"layer{k}"):
            delattr(model.encoder, f"layer{k}")
    if hasattr(model.encoder, "fc"):
        del model.encoder.fc
    return model


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
