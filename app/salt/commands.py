"""``flask predict salt``: a Kaggle submission CSV for a folder of images or SEG-Y files, offline.

Each file goes through the salt handler's own steps, as an API upload does: ``read_salt_files``
(SEG-Y files are stored like uploads and read at their default slice), ``preprocess`` (the data
area of pictures, no data, its mirrored fill), the engine's batched forward pass, and the pure
:meth:`app.salt.handler.SaltHandler.segment` (no-data never salt, the edge rule, the threshold).
So a row's RLE is the ``rle_mask`` the API answers for the same file; nothing is recorded.
"""
from __future__ import annotations

import csv
from pathlib import Path

import click
import torch
from flask.cli import with_appcontext
from tqdm import tqdm
from werkzeug.datastructures import FileStorage

from geovision.imaging import ImageError

from ..engine import ModelNotReady
from ..extensions import engine
from ..tasks.registry import registered
from .volumes import read_salt_files

TASK = "salt"

SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".sgy", ".segy"}


@click.command("predict")
@click.argument("task", type=click.Choice([TASK]))
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="folder of images or SEG-Y files (or a TGS folder holding images/)")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="CSV to write")
@click.option("--batch-size", default=64, show_default=True, help="files per forward pass")
@with_appcontext
def predict(task: str, data: Path, out: Path, batch_size: int) -> None:
    """Write TASK's Kaggle submission (id,rle_mask; id = file name without extension) for --data.
    A file that cannot be segmented gets an empty mask and a warning on standard error."""
    engine.state.wait_loaded()
    try:
        ckpt = engine.checkpoint(task)
    except ModelNotReady as exc:
        raise click.ClickException(str(exc)) from None
    handler = registered()[task]
    folder = data / "images" if (data / "images").is_dir() else data
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in SUFFIXES)
    if not paths:
        raise click.ClickException(f"no images or SEG-Y files in {folder}")
    with open(out, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "rle_mask"])
        for start in tqdm(range(0, len(paths), batch_size), desc=f"{task}: {len(paths)} files", unit="batch"):
            chunk = paths[start:start + batch_size]
            prepared = []
            for path in chunk:
                with open(path, "rb") as fh_in:
                    (item,) = read_salt_files([FileStorage(fh_in, filename=path.name)])
                try:
                    prepared.append(handler.preprocess(item, ckpt))
                except ImageError as exc:
                    click.echo(f"{path.name}: {exc.code}: {exc}", err=True)
                    prepared.append(None)
            rows = [p.rows for p in prepared if p is not None]
            outputs = engine.predict(task, torch.cat(rows)) if rows else None   # local batcher or Ray
            offset = 0
            for path, prep in zip(chunk, prepared):
                if prep is None:
                    writer.writerow([path.stem, ""])
                    continue
                answer = handler.segment(prep, outputs[offset:offset + len(prep.rows)], ckpt)
                offset += len(prep.rows)
                writer.writerow([path.stem, answer["rle_mask"]])
    click.echo(f"wrote {len(paths)} rows to {out}")
