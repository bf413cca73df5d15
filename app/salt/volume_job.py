"""Salt over a whole 3-D SEG-Y volume (``slice=volume``): every inline through the released model,
the answer a salt-probability SEG-Y volume with the survey's own geometry.

Each inline is read, balanced and tiled exactly as the 2-D answer for ``inline:N`` reads it
(:func:`app.salt.inputs.section_grey`), so with ``fuse=inline`` every inline of the answer is that
2-D answer. ``fuse=inline+crossline`` adds a pass over the crosslines and averages the two
probabilities (smoother bodies across inlines, twice the work). A few lines are in flight at once
(``VOLUME_LINES_IN_FLIGHT``) so the batcher, or Ray Serve's replicas, get several lines' tiles
together; only those lines are held in memory, and the answer is written as they finish.
"""
from __future__ import annotations

import shutil
import tempfile
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from flask import current_app

from geovision import nodata, tiling
from geovision.checkpoint import Checkpoint
from geovision.imaging import ImageError
from geovision.tiling import OVERLAP

from ..extensions import engine
from ..outcome import Outcome
from ..tasks.handler import Prepared
from ..uploads import upload_root
from . import segy
from .inputs import amplitude_geometry, section_grey
from .segy_volume import ProbabilityWriter, VolumeGrid, bin_area_m2, open_volume, read_line
from .volumes import Refused, StoredSegy

FUSE = ("inline", "inline+crossline")
MASK_HEADER = 128   #: bytes before the mask's data in mask.npy (format 1.0, header padded to 128)


def volume_geometry(item) -> dict:
    """The stored volume's geometry, checked for a volume job. Raises ImageError: ``invalid_slice``
    (not a SEG-Y file, a 2-D line), ``not_amplitudes`` (a velocity cube), ``volume_too_large`` (413,
    over ``VOLUME_MAX_SAMPLES``), ``image_too_large`` (413, one inline over ``MAX_IMAGE_PIXELS``)."""
    if isinstance(item, Refused):
        raise item.error
    if not isinstance(item, StoredSegy):
        raise ImageError("slice=volume needs a 3-D SEG-Y file (.sgy, .segy), not a picture", code="invalid_slice")
    g = amplitude_geometry(item)
    if g.get("kind") != "3d":
        raise ImageError("slice=volume needs a 3-D survey (inline x crossline grid); this file is a 2-D line: "
                         "use slice=section", code="invalid_slice")
    n_il, n_xl, n_s = g["inlines"][2], g["crosslines"][2], g["samples"]
    limit = int(current_app.config["VOLUME_MAX_SAMPLES"])
    if n_il * n_xl * n_s > limit:
        raise ImageError(f"the volume is {n_il} inlines x {n_xl} crosslines x {n_s} samples = {n_il * n_xl * n_s:,} "
                         f"samples; the limit for a volume job is {limit:,}", code="volume_too_large", status=413)
    pixels = int(current_app.config["MAX_IMAGE_PIXELS"])
    if max(n_xl, n_il) * n_s > pixels:
        raise ImageError(f"one line is {max(n_xl, n_il)}x{n_s} samples; the limit is {pixels:,} pixels",
                         code="image_too_large", status=413)
    return g


def volume_units(item, fuse: str = "inline") -> int:
    """Lines a volume job runs (its progress unit): the inlines, plus the crosslines when fused."""
    g = volume_geometry(item)
    return g["inlines"][2] + (g["crosslines"][2] if fuse == "inline+crossline" else 0)


class MaskFile:
    """``mask.npy``: uint8 (inlines, crosslines, samples), 1 salt, 0 no salt, 255 no data or no trace;
    one inline's block written or read at a time with plain file I/O (no memory map)."""

    def __init__(self, path: Path, shape: tuple[int, int, int]):
        self.shape, self.fh = shape, open(path, "w+b")
        header = {"descr": "|u1", "fortran_order": False, "shape": shape}
        np.lib.format.write_array_header_1_0(self.fh, header)
        self.offset = self.fh.tell()
        self.fh.truncate(self.offset + int(np.prod(shape)))

    def write(self, k: int, block: np.ndarray) -> None:
        self.fh.seek(self.offset + k * self.shape[1] * self.shape[2])
        self.fh.write(np.ascontiguousarray(block, np.uint8).tobytes())

    def read(self, k: int) -> np.ndarray:
        self.fh.seek(self.offset + k * self.shape[1] * self.shape[2])
        return np.frombuffer(self.fh.read(self.shape[1] * self.shape[2]), np.uint8).reshape(self.shape[1:])

    def close(self) -> None:
        self.fh.close()


def _line(handler, ckpt: Checkpoint, amplitudes: np.ndarray, threshold: float, priority: int):
    """(probability float32 (samples, across), 0 on no data; mask bool; no data bool) of one line,
    through the handler's 2-D pipeline (:meth:`SaltHandler.segment`, without the confidence); the
    tiles go to the batcher in job-sized chunks (:meth:`TaskHandler.infer`)."""
    gray, no_data = section_grey(amplitudes, vertical=True)
    inputs, origins, canvas = tiling.model_inputs(nodata.fill_no_data(gray, no_data), ckpt.meta, OVERLAP)
    rows = torch.from_numpy(inputs)
    outputs = handler.infer(rows, priority, progress=lambda done, total: None)   # lines report progress
    prepared = Prepared(rows, gray.shape[::-1], {"gray": gray, "no_data": no_data, "origins": origins, "canvas": canvas})
    answer = handler.segment(prepared, outputs, ckpt, threshold, with_confidence=False)
    return np.where(no_data, 0.0, answer["probs"]).astype(np.float32), answer["mask"], no_data


def _each_line(f, grid: VolumeGrid, kind: str, compute, in_flight: int):
    """Yield (index, compute(amplitudes)) for every line of ``kind`` in order, ``in_flight`` computed
    at once; lines are read here, in the calling thread (segyio handles are not shared)."""
    count = len(grid.inlines) if kind == "inline" else len(grid.crosslines)
    app = current_app._get_current_object()

    def work(amplitudes):
        with app.app_context():
            return compute(amplitudes)

    with ThreadPoolExecutor(max_workers=in_flight, thread_name_prefix="volume") as pool:
        pending: deque = deque()
        for k in range(count):
            pending.append((k, pool.submit(work, read_line(f, grid, kind, k))))
            if len(pending) >= in_flight:
                index, future = pending.popleft()
                yield index, future.result()
        while pending:
            index, future = pending.popleft()
            yield index, future.result()


def run_volume(handler, item, progress=None, priority: int = 0, threshold: float | None = None,
               fuse: str = "inline", domain: str = "time", **_) -> Outcome:
    """The :class:`Outcome` of a volume job: ``salt.sgy`` (probabilities) and ``mask.npy`` kept with the
    answer, the result fields of :func:`_result`. ``progress(lines_done, lines_total)`` after each
    line (it may raise to stop). Raises ImageError as :func:`volume_geometry` does."""
    started = time.perf_counter()
    geometry = volume_geometry(item)
    ckpt = engine.checkpoint(handler.model_task)
    threshold = float(ckpt.meta.get("threshold", 0.5)) if threshold is None else threshold
    in_flight = max(1, int(current_app.config.get("VOLUME_LINES_IN_FLIGHT", 2)))
    tmp = Path(tempfile.mkdtemp(prefix="volume-", dir=_tmp_root()))
    try:
        f, grid = open_volume(item.path)
        with f:
            total = len(grid.inlines) + (len(grid.crosslines) if fuse == "inline+crossline" else 0)
            lines = ["GeoVision salt probability volume: IEEE float32 (format 5), 0..1 per input sample",
                     f"input {item.filename[:50]}  sha256 {item.sha256[:16]}",
                     f"model {ckpt.name} {ckpt.version}  threshold {threshold:g}  fuse {fuse}",
                     "0 = no salt, or no data (dead or missing traces, mutes, padding)",
                     f"inlines {segy._numbers(grid.il)}  crosslines {segy._numbers(grid.xl)}  "
                     f"samples {len(grid.samples)}",
                     "binary and trace headers copied from the input (inline 189, crossline 193,",
                     "CDP X/Y 181/185, scalar 71, sample count 115, interval 117)"]
            mask = MaskFile(tmp / "mask.npy", grid.shape)
            counts = np.zeros(len(grid.samples), np.int64)   # salt bins per sample (time or depth)
            live, done = 0, 0
            compute = lambda a: _line(handler, ckpt, a, threshold, priority)  # noqa: E731
            with ProbabilityWriter(tmp / "salt.sgy", f, grid, lines) as writer:
                for k, (probs, salt, no_data) in _each_line(f, grid, "inline", compute, in_flight):
                    writer.write_line("inline", k, probs)
                    mask.write(k, np.where(no_data, 255, salt).T)
                    counts += salt.sum(axis=1)
                    live += int((~no_data).sum())
                    done += 1
                    if progress:
                        progress(done, total)
                if fuse == "inline+crossline":
                    for k, (probs, _salt, _nd) in _each_line(f, grid, "crossline", compute, in_flight):
                        writer.write_line("crossline", k, probs, average=True)
                        done += 1
                        if progress:
                            progress(done, total)
                    counts = _mask_from(writer, mask, grid, threshold)
            mask.close()
            area = bin_area_m2(f, grid)
    except segy.SegyError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ImageError(str(exc), code="invalid_slice") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    result = _result(item, geometry, grid, threshold, fuse, domain, counts, live, area)
    outcome = Outcome(result, dict(result), {"salt.sgy": _move(tmp / "salt.sgy"), "mask.npy": _move(tmp / "mask.npy", tmp)})
    outcome.task, outcome.filename, outcome.sha256 = handler.name, item.filename, item.sha256
    outcome.size, outcome.model_name, outcome.model_version = (len(grid.crosslines), len(grid.inlines)), ckpt.name, ckpt.version
    elapsed = (time.perf_counter() - started) * 1e3
    outcome.timings = {"decode_ms": 0.0, "inference_ms": elapsed, "total_ms": elapsed}
    return outcome


def _mask_from(writer: ProbabilityWriter, mask: MaskFile, grid: VolumeGrid, threshold: float) -> np.ndarray:
    """Threshold the fused probabilities into ``mask`` (no data kept); returns salt bins per sample."""
    counts = np.zeros(len(grid.samples), np.int64)
    for k in range(len(grid.inlines)):
        picked, cols = grid.traces_of("inline", k)
        block = mask.read(k).copy()                        # (crosslines, samples)
        for i, c in zip(picked.tolist(), cols.tolist()):
            p = np.asarray(writer.dst.trace[i], np.float32)
            block[c] = np.where(block[c] == 255, 255, p > threshold)
        mask.write(k, block)
        counts += (block == 1).sum(axis=0)
    return counts


def _result(item, geometry: dict, grid: VolumeGrid, threshold: float, fuse: str, domain: str,
            counts: np.ndarray, live: int, area: float | None) -> dict:
    """The public fields: ``slice`` (volume), ``segy_id``, ``fuse``, ``threshold``, ``volume`` (the
    geometry), ``salt_samples``, ``salt_fraction`` (of the live samples), ``bin_area_m2``,
    ``salt_area_m2`` (per sample, time or depth), ``salt_volume`` in ``volume_unit`` (m²·ms in time,
    m³ in depth), ``missing_traces`` and ``warning`` when the grid has holes."""
    salt = int(counts.sum())
    step = float(geometry["sample_interval_ms"])
    result = {"slice": "volume", "segy_id": item.segy_id, "fuse": fuse, "threshold": threshold, "domain": domain,
              "volume": {"inlines": geometry["inlines"], "crosslines": geometry["crosslines"],
                         "samples": len(grid.samples), "sample_interval": step,
                         "first_sample": float(grid.samples[0]) if len(grid.samples) else 0.0},
              "salt_samples": salt, "salt_fraction": round(salt / live, 6) if live else 0.0,
              "coverage": round(salt / live, 6) if live else 0.0,
              "bin_area_m2": round(area, 3) if area else None,
              "salt_area_m2": [round(float(c) * area, 1) for c in counts] if area else None,
              "salt_volume": round(salt * area * step, 1) if area else None,
              "volume_unit": "m3" if domain == "depth" else "m2*ms"}
    if grid.missing:
        result["missing_traces"] = int(grid.missing)
        result["warning"] = (f"irregular geometry: {grid.missing} inline x crossline positions have no trace; "
                             "they are absent from salt.sgy and 255 (no data) in mask.npy")
    return result


def _tmp_root() -> Path:
    root = upload_root() / "tmp"
    root.mkdir(parents=True, exist_ok=True)
    return root


def _move(source: Path, cleanup: Path | None = None):
    """An artefact writer moving ``source`` into the answer's folder (then removing ``cleanup``)."""
    def write(path: Path) -> None:
        shutil.move(str(source), str(path))
        if cleanup is not None:
            shutil.rmtree(cleanup, ignore_errors=True)
    return write

