"""Scale-aware measures of an artifact's outputs against the reference (numpy only).

* ``sqnr_db``: signal-to-quantization-noise ratio, ``10 log10(sum(ref^2) / sum((ref - y)^2))``:
  the error's energy relative to the output's own energy, so the same for logits of range 1
  or 100. 20 dB is noise at 10% of the signal's RMS, 40 dB at 1%.
* ``psnr_db``: peak signal-to-noise ratio as Qualcomm AI Hub's inference jobs report it,
  ``10 log10(max|ref|^2 / mean((ref - y)^2))``: the RMS error against the output's peak.
* ``top1_agreement``: for class scores (2-D outputs ``(rows, classes)``), the share of rows
  whose argmax is the reference's; ``None`` for other outputs.

Identical outputs read ``MAX_DB`` (no error at all; JSON has no infinity).
"""

from __future__ import annotations

import math

import numpy as np

MAX_DB = 200.0


def _db(ratio_num: float, ratio_den: float) -> float:
    if ratio_den <= 0.0:
        return MAX_DB
    if ratio_num <= 0.0:
        return -MAX_DB
    return float(min(MAX_DB, max(-MAX_DB, 10.0 * math.log10(ratio_num / ratio_den))))


def sqnr_db(ref: np.ndarray, got: np.ndarray) -> float:
    r, g = np.asarray(ref, np.float64), np.asarray(got, np.float64)
    return _db(float(np.sum(r * r)), float(np.sum((r - g) ** 2)))


def psnr_db(ref: np.ndarray, got: np.ndarray) -> float:
    r, g = np.asarray(ref, np.float64), np.asarray(got, np.float64)
    if r.size == 0:
        return MAX_DB
    peak = float(np.max(np.abs(r)))
    return _db(peak * peak, float(np.mean((r - g) ** 2)))


def top1_agreement(ref: np.ndarray, got: np.ndarray) -> float | None:
    """Share of rows of a ``(rows, classes)`` output with the reference's argmax."""
    if ref.ndim != 2 or ref.shape[1] < 2 or ref.shape != got.shape or ref.shape[0] == 0:
        return None
    return float(np.mean(np.argmax(ref, axis=1) == np.argmax(got, axis=1)))
