"""Histograms of gradients and hessians per (feature, bin): the only stage that differs between
plaintext and encrypted training.

Both builders sum the same fixed-point integers (``tandem.crypto.he.quantise``), so the
plaintext reference and the encrypted path produce bit-identical histograms and hence
identical trees.
"""

from __future__ import annotations

import numpy as np

from tandem.crypto.he import dequantise


def build_histogram(binned: np.ndarray, g_q: np.ndarray, h_q: np.ndarray, rows: np.ndarray, n_bins: int) -> np.ndarray:
    """Plaintext: sum fixed-point ``g_q``/``h_q`` of ``rows`` per feature and bin.

    ``binned`` (n, f) uint8, ``g_q``/``h_q`` (n,) int64, ``rows`` (k,) int indices.
    Returns shape ``(f, n_bins, 2)`` float64 (gradients, hessians), exact: sums stay
    below 2**53 for up to 2**20 rows.
    """
    sub = binned[rows]
    g, h = g_q[rows].astype(np.float64), h_q[rows].astype(np.float64)
    f = binned.shape[1]
    out = np.empty((f, n_bins, 2), dtype=np.float64)
    for j in range(f):
        out[j, :, 0] = np.bincount(sub[:, j], weights=g, minlength=n_bins)
        out[j, :, 1] = np.bincount(sub[:, j], weights=h, minlength=n_bins)
    return dequantise(out)


def histogram_from_sums(g_sum: np.ndarray, h_sum: np.ndarray) -> np.ndarray:
    """Decrypted bucket sums (fixed-point, ``(f, n_bins)`` each) -> ``(f, n_bins, 2)`` float64."""
    return dequantise(np.stack([g_sum, h_sum], axis=-1))
