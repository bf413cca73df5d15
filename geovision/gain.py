"""Time-variant gain of seismic sections (pure NumPy).

Recorded amplitudes decay with time or depth (spherical divergence, absorption), and processed
volumes are often delivered without the gain that compensates it. Clipped at one section-wide
percentile, the deep part of such a section turns into flat grey, which a segmenter trained on
TGS tiles reads as salt (salt interiors are reflection-free). :func:`balance_rows` divides every
sample by the RMS amplitude of the live samples of its depth (time) window across the *whole*
section: the vertical decay goes, while the lateral contrast at one depth (a quiet salt body
beside reflective sediments) is kept, unlike a trace-by-trace AGC. This is the time-variant
scaling of Yilmaz, *Seismic Data Analysis* (SEG, 2001), section 1.4, computed laterally.
"""
from __future__ import annotations

import numpy as np

WINDOW_FRACTION = 0.1   #: the RMS window: this share of the section's height (at least 15 samples)
MAX_GAIN = 20.0         #: no window is raised by more than this over the section's loudest one


def balance_rows(amplitudes: np.ndarray, live: np.ndarray | None = None,
                 window: int | None = None) -> np.ndarray:
    """float32 (H, W) amplitudes with the vertical (row-wise) decay balanced.

    Args:
        amplitudes: (H, W) samples down, traces across, any float dtype (non-finite read as 0).
        live: bool (H, W), the samples that are data (default all); others keep their value.
        window: rows of the centred RMS window (default ``max(15, WINDOW_FRACTION * H)``).
    Returns:
        amplitudes divided by the smoothed live RMS of their row window, rescaled so the loudest
        window keeps its level; gains are limited to :data:`MAX_GAIN`; rows with no live sample
        in their window are left as they are.
    """
    a = np.nan_to_num(np.asarray(amplitudes, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    h = a.shape[0]
    mask = np.ones(a.shape, bool) if live is None else np.asarray(live, bool)
    window = max(15, int(WINDOW_FRACTION * h)) if window is None else max(1, int(window))
    energy = np.where(mask, a * a, 0.0).sum(axis=1)
    count = mask.sum(axis=1).astype(np.float64)
    kernel = np.ones(window)
    rms = np.sqrt(np.convolve(energy, kernel, "same") / np.maximum(np.convolve(count, kernel, "same"), 1.0))
    if not np.any(rms > 0):
        return a
    top = float(rms.max())
    gain = np.where(rms > 0, top / np.maximum(rms, top / MAX_GAIN), 1.0).astype(np.float32)
    return np.where(mask, a * gain[:, None], a).astype(np.float32)
