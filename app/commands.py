"""CLI commands: ``flask train-model TASK --data DIR ...`` (the ``train`` package's CLI) and
``flask serve deploy`` (the Ray Serve backend)."""
from __future__ import annotations

import click
from flask import Flask
from flask.cli import with_appcontext


@click.command("train-model", add_help_option=False,
               context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("task")
@click.pass_context
@with_appcontext
def train_model(ctx: click.Context, task: str) -> None:
    """Train TASK (salt, rocks, whales) and export it to models/; `flask train-model TASK --help` lists options.

    The arguments are those of `python -m train TASK`: the same function runs, with a
    progress bar on stderr. The training package is imported only here, when the command runs.
    Whales also take `--include-decisions`: the admins' confirmed and new individuals (the whale
    page's decisions, with their kept photos) are added to the training photos as labels. Salt
    takes `--corrections`: the masks users fixed with clicks and saved, cut into 101x101 tiles,
    are added to the training tiles (never to the validation split).
    """
    import tempfile

    from train.cli import run

    args = list(ctx.args)
    with tempfile.TemporaryDirectory() as tmp:
        if task == "whales" and "--include-decisions" in args:
            from .whales.decisions import export_decisions

            args.remove("--include-decisions")
            labels = f"{tmp}/decisions.csv"
            click.echo(f"including {export_decisions(labels)} researcher decision(s) as training labels", err=True)
            args += ["--extra-labels", labels]
        if task == "salt" and "--corrections" in args:
            from pathlib import Path

            from .salt.corrections import export_corrections

            args.remove("--corrections")
            tiles = export_corrections(Path(tmp) / "corrections")
            click.echo(f"including {tiles} tile(s) of saved salt corrections as training tiles", err=True)
            args += ["--extra-tiles", f"{tmp}/corrections"]
        meta = run([task, *args], prog="flask train-model")
    click.echo(f"exported {meta['task']} model: validation metrics {meta['metrics']}")


@click.group("serve")
def serve_cli() -> None:
    """Ray Serve backend (INFERENCE_BACKEND=ray)."""


@serve_cli.command("deploy")
def serve_deploy() -> None:
    """Deploy every checkpoint of MODEL_DIR as a Ray Serve application on the cluster at RAY_ADDRESS."""
    from flask import current_app

    from .engine import ray_backend

    tasks = ray_backend.deploy(current_app.config)
    click.echo(f"deployed {', '.join(tasks)} to Ray Serve ({current_app.config.get('RAY_ADDRESS') or 'local'})")


def init_app(app: Flask) -> None:
    app.cli.add_command(train_model)
    app.cli.add_command(serve_cli)
