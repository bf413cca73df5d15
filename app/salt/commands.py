"""``flask predict salt``: a Kaggle submission CSV for a folder of images, offline and batched."""
from __future__ import annotations

import csv
from pathlib import Path

import click
import numpy as np
import torch
from flask.cli import with_appcontext
from PIL import Image
from tqdm import tqdm

from geovision import tiling as proc
from geovision.imaging import to_gray
from geovision.rle import rle_encode
from geovision.tiling import OVERLAP

from ..engine import ModelNotReady
from ..extensions import engine

TASK = "salt"

SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff"}


@click.command("predict")
@click.argument("task", type=click.Choice([TASK]))
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="folder of images (or a TGS folder holding images/)")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="CSV to write")
@click.option("--batch-size", default=64, show_default=True, help="tiles per forward pass")
@with_appcontext
def predict(task: str, data: Path, out: Path, batch_size: int) -> None:
    """Write TASK's Kaggle submission (id,rle_mask; id = file name without extension) for --data."""
    engine.state.wait_loaded()
    try:
        ckpt = engine.checkpoint(task)
    except ModelNotReady as exc:
        raise click.ClickException(str(exc)) from None
    folder = data / "images" if (data / "images").is_dir() else data
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in SUFFIXES)
    if not paths:
        raise click.ClickException(f"no images in {folder}")
    threshold = float(ckpt.meta.get("threshold", 0.5))
    with open(out, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "rle_mask"])
        for start in tqdm(range(0, len(paths), batch_size), desc=f"{task}: {len(paths)} images", unit="batch"):
            chunk = paths[start:start + batch_size]
            grays = []
            for p in chunk:
                with Image.open(p) as im:
                    grays.append(to_gray(im))
            prepared = [proc.model_inputs(g, ckpt.meta, OVERLAP) for g in grays]
            inputs = torch.from_numpy(np.concatenate([x for x, _, _ in prepared]))
            outputs = engine.predict(task, inputs).numpy()   # the local batcher or the Ray deployment
            offsets = np.cumsum([0] + [len(o) for _, o, _ in prepared])
            for i, (p, g, (_, origins, canvas)) in enumerate(zip(chunk, grays, prepared)):
                mask = proc.mask_from_outputs(outputs[offsets[i]:offsets[i + 1]], origins, canvas, g.shape,
                                              ckpt.meta, threshold, OVERLAP)
                writer.writerow([p.stem, rle_encode(mask)])
    click.echo(f"wrote {len(paths)} rows to {out}")
