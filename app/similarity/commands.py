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


def _embedder(task: str):
    engine.state.ready_event.wait()
    try:
        ckpt = engine.checkpoint(task)
    except ModelNotReady as exc:
        raise click.ClickException(f"cannot embed images: {exc}") from None
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
@click.argument("task", type=click.Choice(["similarity"]))
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="folder of images; the sub-folder name is the label")
@click.option("--exclude", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="file listing relative paths to leave out (e.g. a validation split)")
def build(task: str, data: Path, exclude: Path | None) -> None:
    """Embed every image under --data and replace TASK's gallery atomically."""
    size = build_gallery(task, data, exclude)
    click.echo(f"gallery {task}: {size} images in {store().folder / task}")


@gallery_cli.command("add")
@click.argument("task", type=click.Choice(["similarity"]))
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--label", help="label of the new images (default: each file's folder name)")
def add(task: str, images: tuple[Path, ...], label: str | None) -> None:
    """Add IMAGES to TASK's gallery without re-embedding the existing ones."""
    thumbs, embs = _embedder(task)(list(images), f"embedding {len(images)} images")
    items = [{"label": label or p.parent.name, "path": str(p.resolve())} for p in images]
    size = append_to_gallery(store().folder / task, items, embs, thumbs)
    click.echo(f"gallery {task}: {size} images in {store().folder / task}")


def init_app(app: Flask) -> None:
    app.cli.add_command(gallery_cli)
