"""Histograms of gradients and hessians per (feature, bin): the only stage that differs between
plaintext and encrypted training. This is the plaintext builder, the reference."""

from __future__ import annotations

import numpy as np


def build_histogram(binned: np.ndarray, grad: np.ndarray, hess: np.ndarray, rows: np.ndarray,
                    n_bins: int) -> np.ndarray:
    """Sum ``grad`` and ``hess`` of ``rows`` per feature and bin.

    ``binned`` (n, f) uint8, ``grad``/``hess`` (n,), ``rows`` (k,) int indices.
    Returns shape ``(f, n_bins, 2)`` float64: ``[..., 0]`` gradients, ``[..., 1]`` hessians.
    """
    sub = binned[rows]
    g, h = grad[rows], hess[rows]
    f = binned.shape[1]
    out = np.empty((f, n_bins, 2), dtype=np.float64)
    for j in range(f):
        out[j, :, 0] = np.bincount(sub[:, j], weights=g, minlength=n_bins)
        out[j, :, 1] = np.bincount(sub[:, j], weights=h, minlength=n_bins)
    return out
