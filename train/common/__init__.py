"""Pieces shared by the trainers of every task: LR schedule, provenance for ``meta.json``."""
