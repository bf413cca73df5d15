"""Rock-type CNN for 28x28 RGB images, and its two served forms (classifier, embedder)."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

LABELS = ["andesite", "gneiss", "marble", "quartzite", "rhyolite", "schist"]


def _stage(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class RockNet(nn.Module):
    """Three conv stages (28 -> 14 -> 7 -> global pool), an embedding layer and a linear head.

    Args:
        num_classes: output classes; width: channels of the first stage;
        embedding_dim: size of the penultimate layer used as the similarity embedding.
    Input float (N, 3, 28, 28) normalised; ``forward`` returns logits (N, num_classes).
    """

    def __init__(self, num_classes: int = 6, width: int = 32, embedding_dim: int = 128):
        super().__init__()
        self.stages = nn.Sequential(_stage(3, width), nn.MaxPool2d(2), _stage(width, 2 * width), nn.MaxPool2d(2),
                                    _stage(2 * width, 4 * width))
        self.embedding = nn.Sequential(nn.Linear(4 * width, embedding_dim), nn.BatchNorm1d(embedding_dim),
                                       nn.ReLU(inplace=True))
        self.dropout = nn.Dropout(0.2)
        self.head = nn.Linear(embedding_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate activations (N, embedding_dim)."""
        return self.embedding(self.stages(x).mean(dim=(2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.features(x)))


class RockClassifier(nn.Module):
    """Served classifier, one forward pass for the rocks page: float32 (N, num_classes + embedding_dim),
    the class probabilities (softmax of the logits) then the L2-normalised embedding, which is
    :class:`RockEmbedder`'s output for the same ``net`` (the page's similarity search reuses it)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.net.embedding(torch.mean(self.net.stages(x), dim=(2, 3)))
        logits = self.net.head(features)      # the dropout is the identity in evaluation
        return torch.cat([torch.softmax(logits, dim=1), F.normalize(features, dim=1)], dim=1)


class RockEmbedder(nn.Module):
    """Served embedder: L2-normalised penultimate activations float32 (N, embedding_dim)."""

    def __init__(self, net: RockNet):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net.features(x), dim=1)
