"""Salt segmentation (TGS): data, U-Net, training loop, evaluation, export, pseudo-labels,
snapshot combination and self-supervised pretraining."""
from .config import SaltTrainConfig
from .loop import train_salt

TRAINER = (SaltTrainConfig, train_salt)
