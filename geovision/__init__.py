"""GeoVision core: the pure pieces that the server (``app``) and the trainers (``train``) share.

Nothing here imports Flask, the ``app`` package or a training loop: RLE (:mod:`.rle`), the TGS
metric, MAP@5 and ``new_whale`` insertion (:mod:`.metrics`), image decoding and normalisation
(:mod:`.imaging`), salt tiling and blending (:mod:`.tiling`), FAISS retrieval
(:mod:`.retrieval`), whale photo pre-processing and the photo-ID split (:mod:`.whales`), the
checkpoint loader and ``meta.json`` schema (:mod:`.checkpoint`) and device selection
(:mod:`.device`).
"""
