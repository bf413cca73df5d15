"""CLI commands: ``flask train-model``."""
from __future__ import annotations

import logging
import shlex
import sys

import click
from flask import Flask


@click.command("train-model")
@click.argument("task", type=click.Choice(["salt"]))
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False), help="data set folder")
@click.option("--epochs", default=36, show_default=True, type=int)
@click.option("--batch-size", default=32, show_default=True, type=int)
@click.option("--lr", default=2e-3, show_default=True, type=float)
@click.option("--lovasz-from", default=16, show_default=True, type=int, help="first Lovász-hinge epoch")
@click.option("--output", default="models/salt", show_default=True, help="checkpoint folder to write")
@click.option("--run-dir", default="runs/salt", show_default=True, help="logs, metrics.csv, resumable state")
@click.option("--threads", default=0, type=int, help="torch CPU threads (0 = default)")
@click.option("--device", default="auto", show_default=True)
@click.option("--seed", default=42, show_default=True, type=int)
@click.option("--resume", is_flag=True, help="continue from RUN_DIR/last.pt")
@click.option("--dry-run", is_flag=True, help="a few steps on a few tiles, then export")
def train_model(task: str, **options) -> None:
    """Train TASK's model on --data and export it (progress bar on stderr)."""
    from train.salt import SaltTrainConfig, train_salt

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    meta = train_salt(SaltTrainConfig(**options, command="flask train-model " + shlex.join(sys.argv[2:])))
    click.echo(f"exported {options['output']}: validation TGS metric {meta['metrics']['val_tgs_metric']}")


def init_app(app: Flask) -> None:
    app.cli.add_command(train_model)
