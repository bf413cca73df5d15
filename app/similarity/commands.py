"""``flask gallery build|add``: embed reference images into the similarity gallery."""
from __future__ import annotations

from pathlib import Path

import click
import numpy as np
import torch
from flask import Flask
from flask.cli import AppGroup
from PIL import Image
from tqdm import tqdm

from ..engine import ModelNotReady
from ..extensions import engine
from ..gallery import append_to_gallery, store, write_gallery
from ..rocks.processing import normalise, rgb_thumbnail

gallery_cli = AppGroup("gallery", help="Build and extend the galleries searched for similar images.")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff"}


def _wait_for(task: str):
    """The loaded checkpoint of ``task`` once the engine has finished loading (CLI)."""
    engine.state.ready_event.wait()
    try:
        return engine.checkpoint(task)
    except ModelNotReady as exc:
        raise click.ClickException(f"cannot embed images: {exc}") from None


def _embedder(task: str):
    ckpt = _wait_for(task)
    size = int(ckpt.meta["input_shape"][-1])
    norm = ckpt.meta["normalization"]

    def thumbs_and_embeddings(paths: list[Path], desc: str) -> tuple[np.ndarray, np.ndarray]:
        thumbs, embs = [], []
        for start in tqdm(range(0, len(paths), 256), desc=desc, unit="batch"):
            batch = []
            for p in paths[start:start + 256]:
                with Image.open(p) as im:
                    batch.append(rgb_thumbnail(im, size))
            x = np.stack([normalise(t, norm["mean"], norm["std"]) for t in batch])
            with torch.inference_mode():
                embs.append(ckpt.module(torch.from_numpy(x).to(engine.state.device)).float().cpu().numpy())
            thumbs += batch
        return np.stack(thumbs), np.concatenate(embs)

    return thumbs_and_embeddings


def build_gallery(task: str, data: Path, exclude: Path | None) -> int:
    """Embed every image under ``data`` (label = sub-folder name) and swap in the new gallery."""
    skip = set(exclude.read_text().split()) if exclude else set()
    paths = sorted(p for p in data.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES
                   and str(p.relative_to(data)) not in skip)
    if not paths:
        raise click.ClickException(f"no images under {data}")
    thumbs, embs = _embedder(task)(paths, f"embedding {len(paths)} images")
    items = [{"label": p.parent.name if p.parent != data else "", "path": str(p.resolve())} for p in paths]
    write_gallery(store().folder / task, items, embs, thumbs)
    return len(items)


@gallery_cli.command("build")
@click.argument("task", type=click.Choice(["similarity", "whales"]))
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="similarity: folder of images, the sub-folder name is the label; "
                   "whales: folder with train.csv (Image,Id) and the photos (in images/ or beside it)")
@click.option("--exclude", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="similarity: file listing relative paths to leave out; whales: a split CSV "
                   "(train/splits/whales_val.csv) whose queries and held-out individuals are left out")
def build(task: str, data: Path, exclude: Path | None) -> None:
    """Embed every image under --data and replace TASK's gallery atomically."""
    if task == "whales":
        from ..whales.service import build_gallery as build_whales

        _wait_for(task)
        size = build_whales(data, exclude)
    else:
        size = build_gallery(task, data, exclude)
    click.echo(f"gallery {task}: {size} images in {store().folder / task}")


@gallery_cli.command("add")
@click.argument("task", type=click.Choice(["similarity", "whales"]))
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--label", "--id", "label",
              help="similarity: label of the new images (default: each file's folder name); "
                   "whales: the individual's id (required; a known or a new one)")
def add(task: str, images: tuple[Path, ...], label: str | None) -> None:
    """Add IMAGES to TASK's gallery without re-embedding the existing ones."""
    if task == "whales":
        from ..whales.service import enrol

        if not label:
            raise click.UsageError("whales: give the individual with --id ID")
        _wait_for(task)
        photos = []
        for p in images:
            with Image.open(p) as im:
                im.load()
                photos.append((str(p), im, None))
        size = enrol(label, photos)
        click.echo(f"gallery {task}: {size} photos in {store().folder / task}")
        return
    thumbs, embs = _embedder(task)(list(images), f"embedding {len(images)} images")
    items = [{"label": label or p.parent.name, "path": str(p.resolve())} for p in images]
    size = append_to_gallery(store().folder / task, items, embs, thumbs)
    click.echo(f"gallery {task}: {size} images in {store().folder / task}")


def init_app(app: Flask) -> None:
    app.cli.add_command(gallery_cli)
