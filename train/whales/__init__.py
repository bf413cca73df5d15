"""Whale photo-identification embedding (ArcFace) with a calibrated ``new_whale`` threshold."""
from ..common.pretrained import VARIANTS
from .loop import WhalesTrainConfig, train_whales


def train(cfg: WhalesTrainConfig) -> dict:
    """Train as ``cfg`` says: by default (``frozen_stages`` 4, an EfficientNet-Lite backbone) the last
    stages over cached features (:func:`train.whales.cached.train_cached`), the released recipe;
    the whole network (:func:`train_whales`) with ``--frozen-stages 0``, ``resnet18-half`` or ``--init-from``."""
    if cfg.frozen_stages and cfg.backbone in VARIANTS and not cfg.init_from:
        from .cached import train_cached

        return train_cached(cfg)
    return train_whales(cfg)


TRAINER = (WhalesTrainConfig, train)
