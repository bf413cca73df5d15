"""Command line for training: ``python -m train salt|rocks|whales --data DIR --epochs N``.

Every subpackage of ``train`` that exports ``TRAINER = (ConfigClass, train_function)`` is a
task here: a new trainer needs no edit of this file.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import shlex
from dataclasses import fields
from pathlib import Path


def trainers() -> dict:
    """Task name -> (config dataclass, train function) of every ``train.<task>`` with a ``TRAINER``."""
    found = {}
    for info in sorted(pkgutil.iter_modules([str(Path(__file__).parent)]), key=lambda i: i.name):
        if info.ispkg and info.name != "common":
            module = importlib.import_module(f"{__package__}.{info.name}")
            if hasattr(module, "TRAINER"):
                found[info.name] = module.TRAINER
    return found


def build_parser(prog: str = "python -m train") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="task", required=True)
    for task, (config_cls, _) in trainers().items():
        p = sub.add_parser(task, help=(config_cls.__doc__ or "").splitlines()[0])
        for f in fields(config_cls):
            if f.name == "command":
                continue
            flag = "--" + f.name.replace("_", "-")
            if f.type in ("bool", bool):   # --flag / --no-flag
                p.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default)
            else:
                kind = {"int": int, "float": float}.get(str(f.type), str)
                p.add_argument(flag, type=kind, default=f.default, required=f.name == "data",
                               help=None if f.name == "data" else f"default: {f.default}")
    return parser


def run(argv: list[str], prog: str = "python -m train") -> dict:
    """Parse ``argv`` (task first), train and export; returns the written meta.json dict."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = vars(build_parser(prog).parse_args(argv))
    config_cls, trainer = trainers()[args.pop("task")]
    return trainer(config_cls(**args, command=f"{prog} {shlex.join(argv)}"))


def main() -> None:
    import sys

    run(sys.argv[1:])
