"""The second moments of the scorecard's design matrix: all the regression and the feature selection read.

The design matrix ``A = [1, x_1 .. x_p]`` (n, p+1) holds an intercept column of ones and the WoE of each
selected feature on the n training rows. ``Moments`` keeps ``AᵀA`` (p+1, p+1) and ``Aᵀy`` (p+1,) only:
the federated run assembles them across the parties (under homomorphic encryption, elsewhere), the pooled
reference computes them from the rows (``from_rows``); everything downstream (``selection``, ``fit``)
is the same code on either.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tandem.errors import InputError

SYMMETRY_RTOL = 1e-9  # |AᵀA - (AᵀA)ᵀ| allowed, relative to the largest entry (fixed-point decoding noise)


@dataclass(frozen=True, eq=False)
class Moments:
    """``names`` (p,) the WoE features in column order; ``xtx`` (p+1, p+1) float64 = ``AᵀA`` with index 0
    the intercept (``xtx[0, 0]`` = n, ``xtx[0, j]`` = Σ_i x_ij); ``xty`` (p+1,) float64 = ``Aᵀy``
    (``xty[0]`` = number of events). Arrays are stored read-only."""

    names: tuple[str, ...]
    xtx: np.ndarray
    xty: np.ndarray

    def __post_init__(self) -> None:
        xtx, xty = np.array(self.xtx, dtype=np.float64), np.array(self.xty, dtype=np.float64)
        xtx.setflags(write=False)
        xty.setflags(write=False)
        object.__setattr__(self, "names", tuple(self.names))
        object.__setattr__(self, "xtx", xtx)
        object.__setattr__(self, "xty", xty)

    @property
    def p(self) -> int:
        return len(self.names)

    @property
    def n(self) -> float:
        """Training rows (a whole number, as float64)."""
        return float(self.xtx[0, 0])

    @property
    def events(self) -> float:
        """Training rows with y = 1 (a whole number, as float64)."""
        return float(self.xty[0])

    @classmethod
    def from_rows(cls, names, X: np.ndarray, y: np.ndarray) -> Moments:
        """The pooled reference: ``X`` (n, p) WoE features, ``y`` (n,) 0/1 labels."""
        X, y = np.asarray(X, dtype=np.float64), np.asarray(y)
        names = tuple(names)
        if X.ndim != 2 or X.shape[1] != len(names):
            raise InputError(f"X must be (n, {len(names)}) for features {list(names)}, got shape {X.shape}")
        if y.shape != (X.shape[0],):
            raise InputError(f"y must be ({X.shape[0]},) to match X, got shape {y.shape}")
        if not np.isin(y, (0, 1)).all():
            raise InputError("y must hold only 0 and 1")
        A = np.column_stack([np.ones(len(X)), X])
        return cls(names, A.T @ A, A.T @ y.astype(np.float64)).check()

    def subset(self, names) -> Moments:
        """The moments of the features ``names`` only, in the order given (the intercept stays first)."""
        names = tuple(names)
        where = {name: j for j, name in enumerate(self.names)}
        missing = [name for name in names if name not in where]
        if missing:
            raise InputError(f"no moments for features {missing}; have {list(self.names)}")
        if len(set(names)) != len(names):
            raise InputError(f"subset names repeat a feature: {list(names)}")
        idx = np.array([0] + [where[name] + 1 for name in names], dtype=np.int64)
        return Moments(names, self.xtx[np.ix_(idx, idx)], self.xty[idx])

    def check(self) -> Moments:
        """Raise ``InputError`` (one line) for moments no regression can use; return ``self``."""
        k = self.p + 1
        if len(set(self.names)) != self.p:
            raise InputError(f"moments name a feature twice: {list(self.names)}")
        if self.xtx.shape != (k, k) or self.xty.shape != (k,):
            raise InputError(
                f"moments of {self.p} features need xtx ({k}, {k}) and xty ({k},), "
                f"got {self.xtx.shape} and {self.xty.shape}"
            )
        if not (np.isfinite(self.xtx).all() and np.isfinite(self.xty).all()):
            raise InputError("moments hold a non-finite value (NaN or inf)")
        scale = float(np.abs(self.xtx).max())
        if float(np.abs(self.xtx - self.xtx.T).max()) > SYMMETRY_RTOL * scale:
            raise InputError("moments' xtx is not symmetric")
        if self.n < 2:
            raise InputError(f"moments of {self.n:g} rows; at least 2 needed")
        if not 0 < self.events < self.n:
            raise InputError(f"moments with {self.events:g} events in {self.n:g} rows; both classes needed")
        return self
