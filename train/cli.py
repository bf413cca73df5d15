"""Command line for training: ``python -m train salt|rocks --data DIR --epochs N``."""
from __future__ import annotations

import argparse
import logging
import shlex
import sys
from dataclasses import fields

from .rocks import RocksTrainConfig, train_rocks
from .salt import SaltTrainConfig, train_salt

TRAINERS = {"salt": (SaltTrainConfig, train_salt), "rocks": (RocksTrainConfig, train_rocks)}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m train", description=__doc__)
    sub = parser.add_subparsers(dest="task", required=True)
    for task, (config_cls, _) in TRAINERS.items():
        p = sub.add_parser(task)
        for f in fields(config_cls):
            if f.name == "command":
                continue
            flag = "--" + f.name.replace("_", "-")
            if f.type in ("bool", bool):
                p.add_argument(flag, action="store_true")
            else:
                kind = {"int": int, "float": float}.get(str(f.type), str)
                p.add_argument(flag, type=kind, default=f.default, required=f.name == "data")
    return parser


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = vars(build_parser().parse_args(argv))
    config_cls, trainer = TRAINERS[args.pop("task")]
    trainer(config_cls(**args, command="python -m train " + shlex.join(argv)))
