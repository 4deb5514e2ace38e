"""Russian taxpayer numbers (INN): 10 digits for companies, 12 for sole traders, with check digits."""

from __future__ import annotations

import numpy as np

W10 = (2, 4, 10, 3, 5, 9, 4, 6, 8)
W11 = (7, 2, 4, 10, 3, 5, 9, 4, 6, 8)
W12 = (3, 7, 2, 4, 10, 3, 5, 9, 4, 6, 8)


def _check(digits, weights) -> int:
    return sum(int(d) * w for d, w in zip(digits, weights)) % 11 % 10


def inn_is_valid(digits: str) -> bool:
    if len(digits) == 10:
        return _check(digits, W10) == int(digits[9])
    if len(digits) == 12:
        return _check(digits, W11) == int(digits[10]) and _check(digits, W12) == int(digits[11])
    return False


def complete_inn(body: np.ndarray) -> list[str]:
    """Append check digits to ``body`` (shape ``(n, 9)`` or ``(n, 10)`` of digits 0..9)."""
    body = np.asarray(body, dtype=np.int64)
    if body.shape[1] == 9:
        c = (body @ np.array(W10)) % 11 % 10
        full = np.column_stack([body, c])
    elif body.shape[1] == 10:
        c11 = (body @ np.array(W11)) % 11 % 10
        with11 = np.column_stack([body, c11])
        c12 = (with11 @ np.array(W12)) % 11 % 10
        full = np.column_stack([with11, c12])
    else:
        raise ValueError(f"INN body must have 9 or 10 digits, got {body.shape[1]}")
    return ["".join(map(str, row)) for row in full]
