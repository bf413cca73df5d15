"""Offline training package: produces the released checkpoints under ``models/``.

Pure helpers shared with the server (``rle``, ``metrics``, ``tiling``) import only
NumPy; the training loops import PyTorch and never Flask.
"""
