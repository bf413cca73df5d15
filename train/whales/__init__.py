"""Whale photo-identification embedding (ArcFace) with a calibrated ``new_whale`` threshold."""
from .loop import WhalesTrainConfig, train_whales

TRAINER = (WhalesTrainConfig, train_whales)
