"""``flask gallery build|add TASK``: the gallery hooks of every task that keeps a gallery."""
from __future__ import annotations

from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import AppGroup
from PIL import Image

from ..engine import ModelNotReady
from ..extensions import engine
from ..gallery import GalleryUnavailable
from .handler import TaskHandler

gallery_cli = AppGroup("gallery", help="Build and extend the galleries searched for similar images.")


def _gallery_handler(task: str) -> TaskHandler:
    """The handler of ``task`` once the engine has loaded its model (CLI); UsageError otherwise."""
    handlers = {n: h for n, h in current_app.extensions["tasks"].items() if h.has_gallery}
    if task not in handlers:
        raise click.UsageError(f"TASK must be one of: {', '.join(handlers)}")
    engine.state.wait_loaded()
    try:
        engine.checkpoint(handlers[task].model_task)
    except ModelNotReady as exc:
        raise click.ClickException(f"cannot embed images: {exc}") from None
    return handlers[task]


@gallery_cli.command("build")
@click.argument("task")
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="similarity: folder of images, the sub-folder name is the label; "
                   "whales: folder with train.csv (Image,Id) and the photos (in images/ or beside it)")
@click.option("--exclude", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="similarity: file listing relative paths to leave out; whales: a split CSV "
                   "(train/splits/whales_val.csv) whose queries and held-out individuals are left out")
def build(task: str, data: Path, exclude: Path | None) -> None:
    """Embed every image under --data and replace TASK's gallery atomically."""
    handler = _gallery_handler(task)
    try:
        size = handler.build_gallery(data, exclude)
    except GalleryUnavailable as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"gallery {task}: {size} {handler.gallery_unit} in {handler.gallery_root()}")


@gallery_cli.command("add")
@click.argument("task")
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--label", "--id", "label",
              help="similarity: label of the new images (default: each file's folder name); "
                   "whales: the individual's id (required; a known or a new one)")
def add(task: str, images: tuple[Path, ...], label: str | None) -> None:
    """Add IMAGES to TASK's gallery without re-embedding the existing ones."""
    handler = _gallery_handler(task)
    photos = []
    for path in images:
        with Image.open(path) as im:
            im.load()
            photos.append((str(path), im, None))
    try:
        size = handler.add_to_gallery(label, photos)
    except ValueError as exc:
        raise click.UsageError(f"{task}: {exc}") from None
    click.echo(f"gallery {task}: {size} {handler.gallery_unit} in {handler.gallery_root()}")


def init_app(app: Flask) -> None:
    app.cli.add_command(gallery_cli)
