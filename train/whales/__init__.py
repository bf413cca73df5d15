"""Whale photo-identification embedding (ArcFace) with a calibrated ``new_whale`` threshold."""
from .loop import WhalesTrainConfig, train_whales


def train(cfg: WhalesTrainConfig) -> dict:
    """Train as ``cfg`` says: the whole network (:func:`train_whales`) or, with ``frozen_stages``,
    the last stages over cached features (:func:`train.whales.cached.train_cached`)."""
    if cfg.frozen_stages:
        from .cached import train_cached

        return train_cached(cfg)
    return train_whales(cfg)


TRAINER = (WhalesTrainConfig, train)
