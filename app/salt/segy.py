"""SEG-Y input for the salt segmenter (pure functions over segyio, no Flask).

A SEG-Y file is opened memory-mapped and only the requested slice is read: an inline or a
crossline (vertical sections, time/depth downwards) or a time slice (a map view), chosen with
``inline:123``, ``crossline:45`` or ``time:1200`` (milliseconds, nearest sample). Files without
inline/crossline geometry (2-D lines, unsorted gathers) are read as one section, ``section``.
Amplitudes are clipped symmetrically at a percentile of their magnitude and mapped to grey
levels in [0, 1] with zero amplitude at mid-grey, the way seismic sections are displayed and
the way the TGS training images look (8-bit greys, mean about 0.47).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import segyio

SUFFIXES = (".sgy", ".segy")
_SPEC = re.compile(r"^\s*(inline|crossline|time|section|volume)\s*(?::\s*(-?\d+(?:\.\d+)?))?\s*$", re.IGNORECASE)


class SegyError(ValueError):
    """The file is not a readable SEG-Y file, or the requested slice does not exist."""


def is_segy_name(filename: str) -> bool:
    """True when the client file name ends in ``.sgy`` or ``.segy`` (case-insensitive)."""
    return filename.lower().endswith(SUFFIXES)


@dataclass(frozen=True)
class SliceSpec:
    kind: str            #: inline, crossline, time, section or volume (every inline of a 3-D survey)
    number: float | None  #: inline/crossline number, time in ms; None for ``section`` and ``volume``

    def __str__(self) -> str:
        if self.number is None:
            return self.kind
        return f"{self.kind}:{int(self.number) if float(self.number).is_integer() else self.number}"


def parse_slice(spec: str | None) -> SliceSpec | None:
    """``"inline:123"`` -> SliceSpec; None for a blank value; raises SegyError when malformed."""
    if spec is None or not str(spec).strip():
        return None
    m = _SPEC.match(str(spec))
    if not m:
        raise SegyError("slice must look like inline:123, crossline:45, time:1200 (ms), section or volume")
    kind, number = m.group(1).lower(), m.group(2)
    whole = kind in ("section", "volume")
    if not whole and number is None:
        raise SegyError(f"give the {kind} number, e.g. {kind}:{'1200' if kind == 'time' else '100'}")
    return SliceSpec(kind, None if whole else float(number))


def _open(path: Path, mmap: bool = True):
    """Open (memory-mapped unless ``mmap`` is False): with inline/crossline geometry when the headers give one, else as a
    plain list of traces; big-endian (the standard) first, then little-endian (some writers)."""
    error: Exception | None = None
    for endian in ("big", "little"):
        for options in ({"strict": True}, {"ignore_geometry": True}):
            try:
                f = segyio.open(str(path), "r", endian=endian, **options)
            except (RuntimeError, ValueError, IndexError, OSError) as exc:
                error = error or exc
                continue
            if endian == "little" or _plausible(f):
                code = int(f.bin[segyio.BinField.Format])
                if code not in SAMPLE_FORMATS:
                    f.close()
                    raise SegyError(f"sample format code {code} (binary header bytes 3225-3226) is not a SEG-Y "
                                    f"format: 1 IBM float, 2 int32, 3 int16, 5 IEEE float, 8 int8 (rev 2 also "
                                    f"6, 9, 10, 11, 12, 16)")
                if mmap:
                    f.mmap()
                return f
            f.close()
    raise SegyError(f"not a readable SEG-Y file ({error})")


def _plausible(f) -> bool:
    """A big-endian reading of a little-endian file gives absurd sample counts or intervals."""
    samples = np.asarray(f.samples, dtype=float)
    return 1 < len(samples) < 100_000 and float(samples[1] - samples[0]) > 0


#: Inline and crossline numbers beyond this are header garbage (real surveys number lines in the
#: thousands or tens of thousands), refused before any grid is sized from them.
MAX_LINE_NUMBER = 10_000_000
#: Sample format codes (binary header bytes 3225-3226) of SEG-Y rev 1 (1 IBM float, 2 int32, 3 int16,
#: 5 IEEE float, 8 int8) and those rev 2 added that segyio reads (6 IEEE double, 10 uint32,
#: 11 uint16, 12 uint64, 16 uint8, 9 int64).
SAMPLE_FORMATS = {1, 2, 3, 5, 8, 6, 9, 10, 11, 12, 16}


def _numbers(values: np.ndarray) -> list[int]:
    """[first, last, count, step] of a set of line numbers (step: the most common spacing).
    Raises SegyError for numbers outside +-:data:`MAX_LINE_NUMBER`."""
    u = np.unique(values)
    if len(u) and max(abs(int(u[0])), abs(int(u[-1]))) > MAX_LINE_NUMBER:
        raise SegyError(f"line numbers {int(u[0])}..{int(u[-1])} in the trace headers are not plausible "
                        f"(beyond +-{MAX_LINE_NUMBER:,}): damaged headers")
    if len(u) > 1:
        steps, counts = np.unique(np.diff(u), return_counts=True)
        step = int(steps[counts.argmax()])
    else:
        step = 1
    return [int(u[0]), int(u[-1]), len(u), step]


def _headers(f) -> tuple[np.ndarray, np.ndarray]:
    return (np.asarray(f.attributes(segyio.TraceField.INLINE_3D)[:]),
            np.asarray(f.attributes(segyio.TraceField.CROSSLINE_3D)[:]))


def _layout(f) -> tuple[str, np.ndarray | None, np.ndarray | None]:
    """``regular`` (segyio found the grid), ``irregular`` (a grid by the trace headers with traces
    missing, or unsorted), or ``line`` (one inline or one crossline, no headers, or repeated
    positions: a 2-D line read in file order); with the header inline/crossline arrays."""
    if f.ilines is not None and f.xlines is not None:
        return ("line" if len(f.ilines) == 1 or len(f.xlines) == 1 else "regular"), None, None
    il, xl = _headers(f)
    n_il, n_xl = len(np.unique(il)), len(np.unique(xl))
    unique = len(set(zip(il.tolist(), xl.tolist()))) == len(il)
    if n_il == 1 or n_xl == 1 or not unique:
        return "line", None, None
    return "irregular", il, xl


def geometry(path: Path) -> dict:
    """Survey geometry: ``{"kind": "3d"|"2d", "layout": "regular"|"irregular"|"line", "traces",
    "samples", "sample_interval_ms", "time_range_ms": [first, last], "inlines": [first, last,
    count, step], "crosslines": [...], "missing_traces", "warning", "default_slice", "values",
    "trace_axis"}`` (inline/crossline entries only for 3-D files, ``trace_axis`` only for 2-D lines:
    :func:`_trace_axis`). Raises SegyError. Read without memory mapping: every trace header is
    visited, and a mapped pass would grow the process's RSS by the file's size."""
    with _open(path, mmap=False) as f:
        samples = np.asarray(f.samples, dtype=float)
        out = {"traces": int(f.tracecount), "samples": len(samples),
               "sample_interval_ms": float(samples[1] - samples[0]) if len(samples) > 1 else 0.0,
               "time_range_ms": [float(samples[0]), float(samples[-1])] if len(samples) else [0.0, 0.0],
               "format": str(f.format), "endian": "little" if f.endian == "little" else "big"}
        out["values"] = _value_kind(f)
        layout, il, xl = _layout(f)
        out["layout"] = layout
        if layout == "line":
            out.update(kind="2d", default_slice="section", trace_axis=_trace_axis(f))
            if f.ilines is not None:
                out["warning"] = (f"stored as {len(f.ilines)} inline(s) x {len(f.xlines)} crossline(s): "
                                  "read as a 2-D line, traces in file order")
            return out
        if layout == "regular":
            il, xl = np.asarray(f.ilines), np.asarray(f.xlines)
        out.update(kind="3d", inlines=_numbers(il), crosslines=_numbers(xl))
        out["default_slice"] = f"inline:{int(np.unique(il)[len(np.unique(il)) // 2])}"
        if layout == "irregular":
            missing = len(np.unique(il)) * len(np.unique(xl)) - f.tracecount
            out["missing_traces"] = int(missing)
            out["warning"] = (f"irregular geometry: {missing} of {len(np.unique(il)) * len(np.unique(xl))} "
                              "inline x crossline positions have no trace; slices are read by the trace "
                              "headers and the missing traces are shown as no data")
    return out


def _regular(values: np.ndarray) -> tuple[float, float] | None:
    """(first, step) of numbers that run in one non-zero step, else None."""
    if len(values) < 2 or not np.all(np.isfinite(values)):
        return None
    steps = np.diff(values)
    return (float(values[0]), float(steps[0])) if steps[0] != 0 and np.all(steps == steps[0]) else None


def _trace_axis(f) -> dict:
    """The across axis of a 2-D line: CDP numbers (trace header bytes 21-24) when they run in equal
    steps, else shot points (bytes 197-200, scaled by bytes 201-202 as SEG-Y rev 2 defines: a
    negative scalar divides), else the trace's place in the file (1, 2, ...)."""
    cdp = np.asarray(f.attributes(segyio.TraceField.CDP)[:], dtype=float)
    if (found := _regular(cdp)) and cdp.min() > 0:
        return {"label": "CDP", "first": found[0], "step": found[1]}
    shot = np.asarray(f.attributes(segyio.TraceField.ShotPoint)[:], dtype=float)
    scalar = np.asarray(f.attributes(segyio.TraceField.ShotPointScalar)[:], dtype=float)
    shot = np.where(scalar > 0, shot * scalar, shot / np.where(scalar < 0, -scalar, 1.0))   # 0: unscaled
    if (found := _regular(shot)) and np.any(shot != 0):
        return {"label": "shot point", "first": found[0], "step": found[1]}
    return {"label": "trace", "first": 1, "step": 1}


def _value_kind(f, probes: int = 32) -> str:
    """``velocity`` when sampled traces hold only positive values in the range of seismic
    velocities (300..10,000 m/s or ft/s; amplitudes swing around zero), else ``amplitude``."""
    step = max(1, f.tracecount // probes)
    values = np.concatenate([np.asarray(f.trace[i], dtype=np.float64) for i in range(0, f.tracecount, step)])
    values = values[np.isfinite(values)]
    if values.size and values.min() > 0 and 300 <= float(np.median(values)) <= 10_000:
        return "velocity"
    return "amplitude"


def _check_number(kind: str, number: float, values: np.ndarray) -> int:
    first, last, count, step = _numbers(values)
    n = int(number)
    if n != number or n not in set(values.tolist()):
        raise SegyError(f"{kind} {number:g} is not in the survey: {kind}s {first}..{last} in steps of {step} "
                        f"({count} {kind}s)")
    return n


def read_slice(path: Path, spec: SliceSpec) -> np.ndarray:
    """float32 amplitudes (H, W) of one slice: vertical sections are (samples, traces) with
    time downwards; a time slice is (inlines, crosslines). Only that slice is read (mmap).
    In an irregular survey the traces are placed by their headers and missing ones are NaN.

    Raises SegyError for a slice kind the file cannot give or a number outside the survey,
    naming the valid range and step.
    """
    with _open(path) as f:
        layout, il, xl = _layout(f)
        if spec.kind == "section":
            if layout != "line":
                raise SegyError("this is a 3-D survey: choose inline:N, crossline:N or time:MS")
            return np.asarray(f.trace.raw[:], dtype=np.float32).T
        if layout == "line":
            raise SegyError("this file is a 2-D line (no inline x crossline grid): use slice=section")
        samples = np.asarray(f.samples, dtype=float)
        if spec.kind == "time":
            if not samples[0] - 1e-6 <= spec.number <= samples[-1] + 1e-6:
                raise SegyError(f"time {spec.number:g} ms is outside the record ({samples[0]:g}..{samples[-1]:g} ms)")
            index = int(np.abs(samples - spec.number).argmin())
            if layout == "regular":
                return np.asarray(f.depth_slice[index], dtype=np.float32)
            values = np.asarray(f.trace.raw[:], dtype=np.float32)[:, index]
            return _place(values, np.unique(il), np.unique(xl), il, xl)
        if layout == "regular":
            numbers = np.asarray(f.ilines if spec.kind == "inline" else f.xlines)
            n = _check_number(spec.kind, spec.number, numbers)
            return np.asarray(f.iline[n] if spec.kind == "inline" else f.xline[n], dtype=np.float32).T
        along, across = (il, xl) if spec.kind == "inline" else (xl, il)
        n = _check_number(spec.kind, spec.number, along)
        picked = np.flatnonzero(along == n)
        traces = np.stack([np.asarray(f.trace[int(i)], dtype=np.float32) for i in picked])
        positions = np.unique(across)
        out = np.full((len(samples), len(positions)), np.nan, np.float32)
        out[:, np.searchsorted(positions, across[picked])] = traces.T
        return out


def _place(values: np.ndarray, il_axis: np.ndarray, xl_axis: np.ndarray, il: np.ndarray, xl: np.ndarray) -> np.ndarray:
    """A (inlines, crosslines) map of one value per trace, NaN where no trace exists."""
    out = np.full((len(il_axis), len(xl_axis)), np.nan, np.float32)
    out[np.searchsorted(il_axis, il), np.searchsorted(xl_axis, xl)] = values
    return out


def slice_shape(geometry: dict, spec: SliceSpec) -> tuple[int, int]:
    """(height, width) of a slice, from the geometry alone (before anything is read or allocated):
    sections are samples x traces, inlines samples x crosslines, crosslines samples x inlines,
    time slices inlines x crosslines (the full grid of an irregular survey)."""
    if spec.kind == "section" or geometry.get("kind") != "3d":
        return geometry["samples"], geometry["traces"]
    n_il, n_xl = geometry["inlines"][2], geometry["crosslines"][2]
    return {"inline": (geometry["samples"], n_xl), "crossline": (geometry["samples"], n_il),
            "time": (n_il, n_xl)}[spec.kind]


def slice_axes(geometry: dict, spec: SliceSpec, domain: str = "time") -> dict:
    """Axes of a slice's picture for :func:`geovision.figures.with_axes`: line or trace numbers
    across, samples (time in ms or depth in m, as ``domain`` says) down; a time slice has
    crosslines across and inlines down."""
    first, last = geometry["time_range_ms"]
    samples = {"label": "depth (m)" if domain == "depth" else "time (ms)", "first": first,
               "step": geometry["sample_interval_ms"]}
    line = lambda key, label: {"label": label, "first": geometry[key][0], "step": geometry[key][3]}  # noqa: E731
    if spec.kind == "section":   # 2-D lines: CDP or shot points when the headers number them evenly
        return {"x": geometry.get("trace_axis", {"label": "trace", "first": 1, "step": 1}), "y": samples}
    if spec.kind == "inline":
        return {"x": line("crosslines", "crossline"), "y": samples}
    if spec.kind == "crossline":
        return {"x": line("inlines", "inline"), "y": samples}
    return {"x": line("crosslines", "crossline"), "y": line("inlines", "inline")}


def scale_amplitudes(section: np.ndarray, percentile: float = 99.0, live: np.ndarray | None = None) -> np.ndarray:
    """Grey levels float32 (H, W) in [0, 1]: amplitudes clipped at the ``percentile`` of their
    magnitude, zero at 0.5. ``live`` (H, W, bool): the samples the percentile is taken over (the
    others, no data, would pull it towards zero). A dead (all-zero or non-finite) slice is uniform
    mid-grey."""
    a = np.nan_to_num(section.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    sample = np.abs(a if live is None else a[live])
    clip = float(np.percentile(sample, percentile)) if sample.size else 0.0
    if clip <= 0:
        return np.full(a.shape, 0.5, np.float32)
    return (np.clip(a / clip, -1.0, 1.0) * 0.5 + 0.5).astype(np.float32)
