"""Human-readable labels of a scorecard feature's final bins, for reports and stability tables.

Final bins come in ``Layout`` order (``prebin``): value bins, then one bin per special code group, then
the missing bin. Only the party that owns a feature knows its edges: the label holder labels its own
features by their intervals or categories and a passive party's only by bin index.
"""

from __future__ import annotations

import math

import numpy as np

from tandem.errors import InputError
from tandem.learn.scorecard.prebin import Prebins

MAX_LABEL = 60  # characters of a categorical bin's label before its category list is cut short


def number(v: float) -> str:
    """A bin edge as text: whole numbers without a decimal point, others to 6 significant digits."""
    v = float(v)
    if math.isfinite(v) and v == round(v) and abs(v) < 1e15:
        return str(int(round(v)))
    return f"{v:.6g}"


def interval_labels(edges, unit: str = "") -> list[str]:
    """One label per interval of ascending inner ``edges``: ``< e0``, ``[e0, e1)``, .., ``>= e_last``."""
    e = [number(v) + unit for v in edges]
    if not e:
        return ["all values"]
    return [f"< {e[0]}"] + [f"[{lo}, {hi})" for lo, hi in zip(e, e[1:])] + [f">= {e[-1]}"]


def _categories(cats: list) -> str:
    text = ", ".join(str(c) for c in cats)
    if len(text) <= MAX_LABEL:
        return text
    shown: list[str] = []
    for c in cats:
        if len(", ".join(shown + [str(c)])) > MAX_LABEL - 12:
            break
        shown.append(str(c))
    return f"{', '.join(shown)}, … (+{len(cats) - len(shown)})"


def bin_labels(entry: dict, own: bool) -> list[str]:
    """One label per final bin of a model part's feature ``entry`` (``model.active_model`` or
    ``model.passive_model``): intervals or categories, ``special <codes>`` and ``missing`` for a feature of
    the party that reads the model part (``own``: the entry holds its pre-binning and merge); ``bin k`` for
    any other feature, whatever the entry holds."""
    try:
        if not own:
            return [f"bin {b}" for b in range(len(entry["counts"]))]
        prebins = Prebins.from_json(entry["prebins"])
        assign = np.asarray(entry["assign"], dtype=np.int64)
        edges = prebins.final_edges(assign)
    except (KeyError, TypeError, ValueError, IndexError):
        raise InputError(f"feature '{entry.get('name', '?')}' of the model has no bins to label") from None
    kind = prebins.kind
    values = interval_labels(edges) if kind == "numeric" else [_categories(list(c)) for c in edges]
    special = [
        f"special {', '.join(number(float(c)) if kind == 'numeric' else str(c) for c in g)}" for g in prebins.specials
    ]
    labels = values + special + ["missing"]
    if len(labels) != int(assign.max()) + 1:
        raise InputError(f"feature '{entry['name']}' of the model: its merge does not fit its pre-bins")
    return labels
