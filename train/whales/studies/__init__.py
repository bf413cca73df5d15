"""Whale studies: trials measured against the released ranking, none of them released.

Kept apart from the released trainer (:mod:`train.whales.loop`, :mod:`train.whales.cached`) and the
release steps (:mod:`train.whales.photoid` and :mod:`train.whales.fusion` write the served
``meta.json``) so that a reader of the trainer meets only what produced the shipped checkpoint.
Each module is a script that prints (and writes as JSON) its figures; docs/MODELS.md has them:

- :mod:`.rescoring`: calibrated probabilities, encounter priors, fill-ins over the served votes;
- :mod:`.ssl`: SimCLR pretraining of the embedding on the gallery photos (no labels);
- :mod:`.verified`: the embedding's shortlist re-scored with the local features' RANSAC inliers;
- :mod:`.expansion` and :mod:`.fusion_trials`: flip TTA, query expansion and database-side
  augmentation, alone and fused with the votes.
"""
