"""Whole 3-D SEG-Y volumes, pure over segyio (no Flask): read inline by inline (or crossline by
crossline), write a salt-probability volume trace by trace, and measure a salt body.

The input is read with plain file reads, not memory-mapped: pages of a mapped file stay in the
process's resident set once touched, so a mapped pass over a cube grows the server's RSS by the
cube's size. Only one line of traces is held at a time.

The answer copies the input's binary header and every trace header (inline, crossline, CDP X/Y,
coordinate scalars, sample count and interval), so interpretation software (OpendTect, Petrel,
segysak) places it on the amplitudes; its samples are IEEE float32 (format 5), big-endian as
SEG-Y rev 1 asks. Source: SEG-Y rev 1 (SEG Technical Standards Committee, 2002), the segyio
documentation (``segyio.create``, ``segyio.tools.create_text_header``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import segyio

from . import segy

#: Feet to metres (binary header measurement system 2).
FOOT_M = 0.3048


@dataclass
class VolumeGrid:
    """The inline x crossline grid of a 3-D survey, from its trace headers.

    ``inlines``/``crosslines``: sorted unique line numbers (int64); ``il``/``xl``: each trace's line
    numbers (int64, file order); ``samples``: sample times in ms (or depths in m), float64;
    ``missing``: grid positions without a trace (their probability is absent from the answer)."""

    inlines: np.ndarray
    crosslines: np.ndarray
    il: np.ndarray
    xl: np.ndarray
    samples: np.ndarray
    _by_line: dict = field(default_factory=dict, repr=False)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(inlines, crosslines, samples)."""
        return len(self.inlines), len(self.crosslines), len(self.samples)

    @property
    def missing(self) -> int:
        return len(self.inlines) * len(self.crosslines) - len(self.il)

    def traces_of(self, kind: str, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(trace indices, their columns in the line) of the ``index``-th inline or crossline."""
        if kind not in self._by_line:
            along, across = (self.il, self.xl) if kind == "inline" else (self.xl, self.il)
            axis, other = (self.inlines, self.crosslines) if kind == "inline" else (self.crosslines, self.inlines)
            rows, cols = np.searchsorted(axis, along), np.searchsorted(other, across)
            order = np.lexsort((cols, rows))
            bounds = np.searchsorted(rows[order], np.arange(len(axis) + 1))
            self._by_line[kind] = (order, cols, bounds)
        order, cols, bounds = self._by_line[kind]
        picked = order[bounds[index]:bounds[index + 1]]
        return picked, cols[picked]


def open_volume(path: Path):
    """(open segyio file, :class:`VolumeGrid`) of a 3-D survey, read without memory mapping; close
    the file when done. Raises SegyError for a 2-D line or a file without an inline x crossline grid."""
    f = segy._open(path, mmap=False)
    layout, il, xl = segy._layout(f)
    if layout == "line":
        f.close()
        raise segy.SegyError("slice=volume needs a 3-D survey (inline x crossline grid); this file is a 2-D "
                             "line: use slice=section")
    if il is None:
        il, xl = segy._headers(f)
    il, xl = np.asarray(il, np.int64), np.asarray(xl, np.int64)
    segy._numbers(il), segy._numbers(xl)   # implausible header numbers are refused
    return f, VolumeGrid(np.unique(il), np.unique(xl), il, xl, np.asarray(f.samples, dtype=float))


def _read_traces(f, picked: np.ndarray) -> np.ndarray:
    """float32 (len(picked), samples): one read for a contiguous run of traces, else trace by trace."""
    if len(picked) and picked[-1] - picked[0] + 1 == len(picked) and np.all(np.diff(picked) == 1):
        return np.asarray(f.trace.raw[int(picked[0]):int(picked[-1]) + 1], dtype=np.float32).reshape(len(picked), -1)
    return np.stack([np.asarray(f.trace[int(i)], dtype=np.float32) for i in picked])


def read_line(f, grid: VolumeGrid, kind: str, index: int) -> np.ndarray:
    """float32 amplitudes (samples, traces across) of the ``index``-th inline (crosslines across) or
    crossline (inlines across), time or depth downwards; NaN where the grid has no trace."""
    picked, cols = grid.traces_of(kind, index)
    width = len(grid.crosslines) if kind == "inline" else len(grid.inlines)
    out = np.full((len(grid.samples), width), np.nan, np.float32)
    if len(picked):
        out[:, cols] = _read_traces(f, picked).T
    return out


def text_header(lines: list[str]) -> bytes:
    """A 3200-byte textual header (40 card images ``C01``..``C40`` of 80 characters) of ``lines``."""
    return segyio.tools.create_text_header({i + 1: line[:76] for i, line in enumerate(lines[:40])})


class ProbabilityWriter:
    """The answer volume: the input's headers, float32 samples written line by line.

    ``create`` copies the binary header (format set to 5, no extended textual headers), every trace
    header, and writes zero traces, in file order; :meth:`write_line` then sets the traces of one
    inline or crossline. ``path`` is complete after :meth:`close` (or the ``with`` block)."""

    def __init__(self, path: Path, src, grid: VolumeGrid, lines: list[str]):
        spec = segyio.spec()
        spec.samples, spec.format, spec.tracecount, spec.endian = list(src.samples), 5, src.tracecount, "big"
        self.grid, self.dst = grid, segyio.create(str(path), spec)
        self.dst.text[0] = text_header(lines)
        self.dst.bin.update({k: v for k, v in src.bin.items()})
        self.dst.bin.update({segyio.BinField.Format: 5, segyio.BinField.ExtendedHeaders: 0})
        zeros = np.zeros(len(src.samples), np.float32)
        for i in range(src.tracecount):
            self.dst.header[i] = src.header[i]
            self.dst.trace[i] = zeros

    def write_line(self, kind: str, index: int, values: np.ndarray, average: bool = False) -> None:
        """Set the traces of one line from ``values`` float32 (samples, traces across); ``average``:
        the mean with what the traces hold (a second pass over the other direction)."""
        picked, cols = self.grid.traces_of(kind, index)
        for i, c in zip(picked.tolist(), cols.tolist()):
            column = values[:, c].astype(np.float32)
            if average:
                column = (np.asarray(self.dst.trace[i], np.float32) + column) / 2
            self.dst.trace[i] = column

    def close(self) -> None:
        self.dst.close()

    def __enter__(self) -> ProbabilityWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def bin_area_m2(f, grid: VolumeGrid) -> float | None:
    """Area of one inline x crossline bin in m², from CDP X/Y (trace header bytes 181-188, scaled by
    bytes 71-72: a negative scalar divides) fitted by least squares as ``a * inline + b * crossline +
    c``; the bin is |a x b| times the line steps. Feet (binary header measurement system 2) are
    converted. None when the coordinates are absent or do not span a grid."""
    if len(grid.il) < 3:
        return None
    x = np.asarray(f.attributes(segyio.TraceField.CDP_X)[:], dtype=float)
    y = np.asarray(f.attributes(segyio.TraceField.CDP_Y)[:], dtype=float)
    scalar = np.asarray(f.attributes(segyio.TraceField.SourceGroupScalar)[:], dtype=float)
    factor = np.where(scalar > 0, scalar, np.where(scalar < 0, 1.0 / np.where(scalar < 0, -scalar, 1.0), 1.0))
    x, y = x * factor, y * factor
    if not np.any(x) and not np.any(y):
        return None
    design = np.column_stack([grid.il, grid.xl, np.ones(len(grid.il))]).astype(float)
    (ax, bx, _), *_ = np.linalg.lstsq(design, x, rcond=None)
    (ay, by, _), *_ = np.linalg.lstsq(design, y, rcond=None)
    step_il = segy._numbers(grid.il)[3]
    step_xl = segy._numbers(grid.xl)[3]
    area = abs(ax * by - ay * bx) * step_il * step_xl
    if int(f.bin[segyio.BinField.MeasurementSystem]) == 2:
        area *= FOOT_M ** 2
    return float(area) if np.isfinite(area) and area > 0 else None
