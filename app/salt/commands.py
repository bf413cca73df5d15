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
from pathlib import Path

import click
from flask.cli import with_appcontext
from tqdm import tqdm
from werkzeug.datastructures import FileStorage

from ..engine import ModelNotReady
from ..extensions import engine
from ..serve import Refused, serve
from ..tasks.registry import registered
from .volumes import read_salt_files

TASK = "salt"

SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".sgy", ".segy"}


@click.command("predict")
@click.argument("task", type=click.Choice([TASK]))
@click.option("--data", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="folder of images or SEG-Y files (or a TGS folder holding images/): a submission CSV")
@click.option("--volume", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="a 3-D SEG-Y survey: its salt-probability volume (SEG-Y) to --out")
@click.option("--out", "-o", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="CSV to write (--data) or SEG-Y to write (--volume)")
@click.option("--batch-size", default=64, show_default=True, help="files answered at once (their tiles go to the batcher together)")
@click.option("--threshold", type=float, default=None, help="--volume: salt probability cut (default: the checkpoint's)")
@click.option("--fuse", type=click.Choice(["inline", "inline+crossline"]), default="inline", show_default=True,
              help="--volume: inlines only, or averaged with a crossline pass")
@with_appcontext
def predict(task: str, data: Path | None, volume: Path | None, out: Path, batch_size: int,
            threshold: float | None, fuse: str) -> None:
    """Write TASK's Kaggle submission (id,rle_mask; id = file name without extension) for --data,
    or the salt-probability SEG-Y of the survey --volume (the API's volume job, same file).
    A file that cannot be segmented gets an empty mask and a warning on standard error."""
    if (data is None) == (volume is None):
        raise click.UsageError("give --data (a folder: submission CSV) or --volume (a SEG-Y survey)")
    engine.state.wait_loaded()
    try:
        engine.checkpoint(task)
    except ModelNotReady as exc:
        raise click.ClickException(str(exc)) from None
    handler = registered()[task]
    if volume is not None:
        return predict_volume(handler, volume, out, threshold, fuse)
    folder = data / "images" if (data / "images").is_dir() else data
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in SUFFIXES)
    if not paths:
        raise click.ClickException(f"no images or SEG-Y files in {folder}")
    with open(out, "w", newline="") as fh, tqdm(total=len(paths), desc=f"{task}: {len(paths)} files", unit="file") as bar:
        writer = csv.writer(fh)
        writer.writerow(["id", "rle_mask"])
        for start in range(0, len(paths), max(1, batch_size)):   # the chunk's tiles share forward passes
            chunk = paths[start:start + max(1, batch_size)]
            for path, result in zip(chunk, serve(handler, read_files(chunk), {}, queue=False, record=False)):
                if isinstance(result, Refused):
                    click.echo(f"{path.name}: {result.code}: {result.message}", err=True)
                writer.writerow([path.stem, "" if isinstance(result, Refused) else result.outcome.result["rle_mask"]])
                bar.update()
    click.echo(f"wrote {len(paths)} rows to {out}")


def read_files(paths: list[Path]) -> list:
    """The salt items of ``paths`` (images, SEG-Y files stored and read at their default slice)."""
    items = []
    for path in paths:
        with open(path, "rb") as fh:
            items.extend(read_salt_files([FileStorage(fh, filename=path.name)]))
    return items


def predict_volume(handler, volume: Path, out: Path, threshold: float | None, fuse: str) -> None:
    """``--volume``: the volume job's pipeline (:func:`app.serve.serve` -> :func:`app.salt.volume_job.run_volume`)
    with a progress bar; ``out`` gets the answer's ``salt.sgy`` (nothing is recorded)."""
    from .segy import SliceSpec

    with open(volume, "rb") as fh:
        (item,) = read_salt_files([FileStorage(fh, filename=volume.name)])
    bar = tqdm(desc=f"salt: {volume.name}", unit="line")

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    try:
        (answer,) = serve(handler, [item], {"spec": SliceSpec("volume", None), "threshold": threshold, "fuse": fuse},
                          queue=False, record=False, progress=progress)
    finally:
        bar.close()
    if isinstance(answer, Refused):
        raise click.ClickException(f"{volume.name}: {answer.code}: {answer.message}")
    outcome = answer.outcome
    outcome.artefacts["salt.sgy"](out)
    outcome.artefacts["mask.npy"](out.with_suffix(".mask.npy"))
    r = outcome.result
    click.echo(f"wrote {out} ({r['volume']['inlines'][2]} inlines x {r['volume']['crosslines'][2]} crosslines x "
               f"{r['volume']['samples']} samples): {r['salt_fraction'] * 100:.2f} % salt; mask in "
               f"{out.with_suffix('.mask.npy')}")
