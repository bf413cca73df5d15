"""``flask predict salt``: a Kaggle submission CSV for a folder of images or SEG-Y files, offline.

Each file goes through the salt handler's pure pipeline, :meth:`app.tasks.handler.TaskHandler.run`,
as an API upload does: ``read_salt_files`` (SEG-Y files are stored like uploads and read at their
default slice), ``preprocess`` (the data area of pictures, no data, its mirrored fill), the
engine's batched forward pass and ``postprocess`` (no data never salt, the edge rule, the
threshold). ``--batch-size`` files run at once, so the dynamic batcher joins their tiles into
shared forward passes. A row's RLE is the ``rle_mask`` the API answers for the same file;
nothing is recorded.
"""
from __future__ import annotations

import csv
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import click
from flask import current_app
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
@click.option("--batch-size", default=64, show_default=True, help="files answered at once (their tiles share forward passes)")
@with_appcontext
def predict(task: str, data: Path, out: Path, batch_size: int) -> None:
    """Write TASK's Kaggle submission (id,rle_mask; id = file name without extension) for --data.
    A file that cannot be segmented gets an empty mask and a warning on standard error."""
    engine.state.wait_loaded()
    try:
        engine.checkpoint(task)
    except ModelNotReady as exc:
        raise click.ClickException(str(exc)) from None
    handler = registered()[task]
    folder = data / "images" if (data / "images").is_dir() else data
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in SUFFIXES)
    if not paths:
        raise click.ClickException(f"no images or SEG-Y files in {folder}")
    app = current_app._get_current_object()

    def rle_mask(path: Path) -> str:
        with app.app_context(), open(path, "rb") as fh:
            (item,) = read_salt_files([FileStorage(fh, filename=path.name)])
            try:
                return handler.run(item).result["rle_mask"]
            except ImageError as exc:
                click.echo(f"{path.name}: {exc.code}: {exc}", err=True)
                return ""

    with open(out, "w", newline="") as fh, ThreadPoolExecutor(max_workers=max(1, batch_size)) as pool:
        writer = csv.writer(fh)
        writer.writerow(["id", "rle_mask"])
        answers = pool.map(rle_mask, paths)   # in order; the batcher joins the files' tiles
        for path, rle in tqdm(zip(paths, answers), total=len(paths), desc=f"{task}: {len(paths)} files", unit="file"):
            writer.writerow([path.stem, rle])
    click.echo(f"wrote {len(paths)} rows to {out}")
