"""Population stability: how far a later period's distribution has moved from the development sample's.

``psi(expected, actual) = Σ_k (a_k - e_k)·ln(a_k / e_k)`` over bins ``k``, with ``e_k`` / ``a_k`` each bin's
share of the development / later rows. A bin empty on one side would make the logarithm infinite, so every
share is floored at ``EMPTY_SHARE = 0.0001`` (0.01 %, the floor most risk teams use) before the sum: a bin
empty on both sides adds 0, one empty on one side adds a large but finite term.

The same formula gives the score's population stability index (PSI, over score bands) and a feature's
characteristic stability index (CSI, over the feature's final bins). Each party computes the CSI of its own
features on its own rows; nothing here talks to another party.

Score bands are the **deciles of the development score** (``band_edges``): each band then holds about a
tenth of the development rows, so no expected share sits near the floor and the index does not depend on
the points scale (fixed 20-point bands would, and leave the tails almost empty). A scorecard's score takes
few distinct values, so tied deciles merge and there may be fewer than ten bands.

Traffic lights (``traffic_light``), the usual reading: below 0.1 green (no real change), 0.1 to 0.25 amber
(watch it), above 0.25 red (the population has moved; review the model).
"""

from __future__ import annotations

import math

import numpy as np

from tandem.errors import InputError
from tandem.learn.scorecard.labels import bin_labels, interval_labels
from tandem.learn.scorecard.model import final_bins

EMPTY_SHARE = 1e-4  # floor of a bin's share (0.01 %) so an empty bin gives a finite term
GREEN_BELOW = 0.1  # PSI < 0.1: green
RED_ABOVE = 0.25  # PSI > 0.25: red; 0.1 <= PSI <= 0.25: amber
SCORE_BANDS = 10  # deciles of the development score
LIGHTS = ("green", "amber", "red")


def _counts(x, what: str) -> np.ndarray:
    c = np.asarray(x, dtype=np.float64)
    if c.ndim != 1 or len(c) == 0:
        raise InputError(f"{what} counts must be a non-empty 1-D array, got shape {c.shape}")
    if not np.isfinite(c).all() or (c < 0).any():
        raise InputError(f"{what} counts must be finite and >= 0")
    if c.sum() <= 0:
        raise InputError(f"{what} counts hold no rows")
    return c


def shares(counts) -> np.ndarray:
    """(k,) each bin's share of the rows, floored at ``EMPTY_SHARE`` (the shares the index uses)."""
    c = _counts(counts, "bin")
    return np.maximum(c / c.sum(), EMPTY_SHARE)


def psi_terms(expected, actual) -> np.ndarray:
    """(k,) each bin's term ``(a - e)·ln(a / e)`` of the index (all >= 0) for counts (k,) of both periods."""
    e, a = _counts(expected, "expected"), _counts(actual, "actual")
    if e.shape != a.shape:
        raise InputError(f"expected and actual counts need the same bins, got {len(e)} and {len(a)}")
    pe, pa = shares(e), shares(a)
    return (pa - pe) * np.log(pa / pe)


def psi(expected, actual) -> float:
    """The population stability index of bin counts ``actual`` (k,) against ``expected`` (k,)."""
    return float(math.fsum(psi_terms(expected, actual)))


def traffic_light(value: float) -> str:
    """``"green"`` below 0.1, ``"amber"`` from 0.1 to 0.25 (both included), ``"red"`` above 0.25."""
    if not isinstance(value, (int, float, np.floating)) or not math.isfinite(value) or value < 0:
        raise InputError(f"a stability index must be a finite number >= 0, got {value!r}")
    if value < GREEN_BELOW:
        return "green"
    return "amber" if value <= RED_ABOVE else "red"


# Scores are banded at this many decimals: a scorecard's scores take few values, a band edge is one of them,
# and the same score computed by another path (PD -> logit -> points) differs in the last bits; unrounded,
# a whole tie group could fall on either side of its edge.
SCORE_DECIMALS = 6


def band_edges(dev_scores, n_bands: int = SCORE_BANDS) -> np.ndarray:
    """(b - 1,) ascending inner edges of the score bands: the ``n_bands``-quantiles of the development
    scores (n,), each a development score itself (numpy's ``higher`` method, so tied scores are never
    split), ties merged (so ``b <= n_bands``). Band ``k`` holds ``edges[k-1] <= score < edges[k]``."""
    s = np.asarray(dev_scores, dtype=np.float64)
    if s.ndim != 1 or len(s) == 0 or not np.isfinite(s).all():
        raise InputError("development scores must be a non-empty 1-D array of finite numbers")
    if isinstance(n_bands, bool) or not isinstance(n_bands, int) or n_bands < 2:
        raise InputError(f"n_bands must be an integer >= 2, got {n_bands!r}")
    s = np.round(s, SCORE_DECIMALS)
    inner = np.quantile(s, np.linspace(0, 1, n_bands + 1)[1:-1], method="higher")
    return np.unique(inner[(inner > s.min()) & (inner <= s.max())])


def score_bands(scores, edges) -> np.ndarray:
    """(n,) band ids ``0 .. len(edges)`` of scores (n,), rounded to ``SCORE_DECIMALS``, for inner ``edges``
    (``band_edges``)."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1 or not np.isfinite(s).all():
        raise InputError("scores must be a 1-D array of finite numbers")
    e = np.asarray(edges, dtype=np.float64)
    if e.ndim != 1 or (np.diff(e) <= 0).any():
        raise InputError("band edges must be a strictly ascending 1-D array")
    return np.searchsorted(e, np.round(s, SCORE_DECIMALS), side="right").astype(np.int64)


def counts_table(expected, actual, labels: list[str]) -> dict:
    """The stability table of per-bin counts ``expected`` / ``actual`` (k,) with one label per bin:
    ``{"rows": [{bin, label, expected, actual, expected_share, actual_share, psi}], "psi", "light"}``
    (JSON-ready; ``psi`` of a row is its term, the shares are the unfloored ones)."""
    terms = psi_terms(expected, actual)
    e, a = np.asarray(expected, dtype=np.float64), np.asarray(actual, dtype=np.float64)
    if len(labels) != len(e):
        raise InputError(f"{len(labels)} labels for {len(e)} bins")
    rows = [
        {
            "bin": k,
            "label": str(labels[k]),
            "expected": int(e[k]),
            "actual": int(a[k]),
            "expected_share": float(e[k] / e.sum()),
            "actual_share": float(a[k] / a.sum()),
            "psi": float(terms[k]),
        }
        for k in range(len(e))
    ]
    total = float(math.fsum(terms))
    return {"rows": rows, "psi": total, "light": traffic_light(total)}


def stability_table(dev_bins, new_bins, n_bins: int, labels: list[str]) -> dict:
    """The stability table (``counts_table``) of rows' bin ids ``dev_bins`` (n,) of the development sample
    and ``new_bins`` (m,) of a later period, ids in ``0 .. n_bins - 1``: a feature's final bins (CSI) or
    score bands (PSI)."""
    counts = []
    for what, bins in (("development", dev_bins), ("later period", new_bins)):
        b = np.asarray(bins)
        if b.ndim != 1 or not np.issubdtype(b.dtype, np.integer):
            raise InputError(f"{what} bin ids must be a 1-D integer array")
        if len(b) and (b.min() < 0 or b.max() >= n_bins):
            raise InputError(f"{what} bin ids must lie in 0..{n_bins - 1}")
        counts.append(np.bincount(b, minlength=n_bins))
    return counts_table(counts[0], counts[1], labels)


def score_reference(dev_scores, n_bands: int = SCORE_BANDS) -> dict:
    """What a later period's score PSI needs of the development sample (JSON-ready, e.g. kept beside the
    model): ``{"edges": inner band edges, "counts": development rows per band}``."""
    edges = band_edges(dev_scores, n_bands)
    counts = np.bincount(score_bands(dev_scores, edges), minlength=len(edges) + 1)
    return {"edges": edges.tolist(), "counts": counts.tolist()}


def score_stability(reference: dict, new_scores, unit: str = "") -> dict:
    """The score's stability table of a later period's scores (m,) against ``score_reference``'s bands."""
    try:
        edges = np.asarray(reference["edges"], dtype=np.float64)
        expected = np.asarray(reference["counts"], dtype=np.float64)
    except (KeyError, TypeError, ValueError):
        raise InputError("a score reference needs 'edges' and 'counts'") from None
    if len(expected) != len(edges) + 1:
        raise InputError(f"a score reference with {len(edges)} edges needs {len(edges) + 1} counts")
    actual = np.bincount(score_bands(new_scores, edges), minlength=len(expected))
    return counts_table(expected, actual, interval_labels(edges, unit))


def feature_stability(entry: dict, new_x, dev_x=None) -> dict:
    """The CSI table of one of the reading party's own features ``entry`` (a model part's feature with its
    pre-binning and merge): rows ``new_x`` (m,) of a later period against ``dev_x`` (n,) raw values of the
    development sample or, when ``dev_x`` is None, against the training rows per final bin that the label
    holder's model part keeps (``counts``; a passive party's part has none: it passes ``dev_x``)."""
    if "prebins" not in entry or "assign" not in entry:
        raise InputError(f"feature '{entry.get('name', '?')}' is not this party's own: its owner computes its CSI")
    labels = bin_labels(entry, own=True)
    n_bins = len(labels)
    new = final_bins(entry, np.asarray(new_x))
    if dev_x is not None:
        return stability_table(final_bins(entry, np.asarray(dev_x)), new, n_bins, labels)
    if "counts" not in entry:
        raise InputError(f"feature '{entry['name']}': no training counts in this model part; give the development rows")
    return counts_table(np.asarray(entry["counts"]), np.bincount(new, minlength=n_bins), labels)
