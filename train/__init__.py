"""Offline training package: produces the released checkpoints under ``models/``.

One subpackage per task (``train.salt``, ``train.rocks``, ``train.whales``), each exporting
``TRAINER = (ConfigClass, train_function)`` for the CLI; shared pieces are in
``train.common`` and in the core package :mod:`geovision` (metrics, RLE, retrieval, checkpoint
``meta.json``). Nothing here imports Flask or the ``app`` package.
"""
