"""The training options, declared once: name, default, help, the check of a value, and the
conversions to the wire request (``TrainRequest`` fields), to estimator keyword arguments
and to ``BoostParams``.

The command line (``tandem train``, ``tandem node --train``, ``tandem propensity``) generates
its options from ``TrainingOptions``' fields; the estimators, ``BoostParams`` and the federated
job take their defaults from ``DEFAULTS``. Fractions are shares in (0, 1); on the wire they
travel as parts per million (``*_ppm``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from tandem.crypto.key_size import MAX_KEY_BITS, min_key_bits
from tandem.errors import InputError

SCHEMES = ("ou", "paillier")


def _option(default: Any, help: str, flag: str | None = None) -> Any:
    """A field with its command-line help; ``flag`` when the option's name is not ``--field-name``."""
    return field(default=default, metadata={"help": help, "flag": flag})


@dataclass(frozen=True)
class TrainingOptions:
    """Options of one federated training run, by command-line name."""

    test_fraction: float = _option(0.2, "Share of linked rows held out for testing.")
    seed: int = _option(42, "Seed of the train/test split and the binning.")
    trees: int = _option(50, "Number of trees.")
    max_depth: int = _option(5, "Depth of each tree.")
    learning_rate: float = _option(0.1, "Shrinkage per tree.")
    bins: int = _option(32, "Bins per feature, the missing-value bin included (3..256).")
    l2: float = _option(1.0, "L2 regularisation of leaf values (lambda).", "--l2")
    min_child_weight: float = _option(1.0, "Smallest hessian sum a child may have.")
    goss: bool = _option(
        False,
        "Gradient-based one-side sampling: grow each tree on the rows with the largest "
        "gradients plus a random share of the rest (faster).",
        "--goss",
    )
    goss_top: float = _option(0.2, "GOSS: share of rows kept by largest |gradient|.")
    goss_other: float = _option(0.1, "GOSS: share of rows sampled from the rest.")
    early_stopping: int = _option(
        0, "Stop after this many trees without a better validation AUC (0: off); the best number of trees is kept."
    )
    validation_fraction: float = _option(0.1, "Share of training rows held out for early stopping.")
    he: str = _option("ou", "Homomorphic encryption: ou (Okamoto-Uchiyama) or paillier.", "--he")
    key_bits: int = _option(2048, "Key size of the homomorphic encryption, in bits.")
    first_tree_active_only: bool = _option(
        False,
        "Grow the first tree on the label holder's features only "
        "(narrows SecureBoost's instance-space leak; see docs/privacy.md).",
        "--first-tree-active-only",
    )

    @classmethod
    def from_args(cls, args: Mapping[str, Any]) -> TrainingOptions:
        """From a dict by command-line name; options it does not name keep their defaults."""
        unknown = set(args) - set(NAMES)
        if unknown:
            raise InputError(f"unknown training option(s): {', '.join(sorted(unknown))}")
        return cls(**args)

    def with_args(self, args: Mapping[str, Any]) -> TrainingOptions:
        return replace(self, **args)

    def as_args(self) -> dict[str, Any]:
        """By command-line name (the inverse of ``from_args``)."""
        return asdict(self)

    def check(self) -> TrainingOptions:
        """Raise ``InputError`` (one line naming the option) for a bad value; return ``self``."""
        if not 0 < self.test_fraction < 1 or not 0 < self.validation_fraction < 1:
            raise InputError("--test-fraction and --validation-fraction must be between 0 and 1")
        if self.he not in SCHEMES:
            raise InputError(f"--he must be ou or paillier, got '{self.he}'")
        low, high = min_key_bits(), MAX_KEY_BITS
        if not low <= self.key_bits <= high:
            raise InputError(f"--key-bits must be between {low} and {high}, got {self.key_bits}")
        self.boost_params().check()
        return self

    def request_fields(self) -> dict[str, Any]:
        """The ``TrainRequest`` fields (without session and model id)."""
        top, other = (self.goss_top, self.goss_other) if self.goss else (0.0, 0.0)
        return {
            "seed": self.seed,
            "test_fraction_ppm": round(self.test_fraction * 1_000_000),
            "n_trees": self.trees,
            "max_depth": self.max_depth,
            "bins": self.bins,
            "learning_rate": self.learning_rate,
            "l2": self.l2,
            "min_child_weight": self.min_child_weight,
            "first_tree_active_only": bool(self.first_tree_active_only),
            "goss_top_ppm": round(top * 1_000_000),
            "goss_other_ppm": round(other * 1_000_000),
            "early_stopping_rounds": self.early_stopping,
            "validation_fraction_ppm": round(self.validation_fraction * 1_000_000),
        }

    def estimator_kwargs(self) -> dict[str, Any]:
        return estimator_kwargs(self.request_fields())

    def boost_params(self) -> Any:
        """The ``tandem.learn.rounds.BoostParams`` of these options (unchecked)."""
        from tandem.learn.rounds import BoostParams
        from tandem.learn.splitting import SplitParams

        kw = self.estimator_kwargs()
        return BoostParams(
            kw["n_trees"],
            kw["max_depth"],
            kw["learning_rate"],
            kw["bins"],
            SplitParams(kw["l2"], kw["min_child_weight"]),
            goss=kw["goss"],
            early_stopping_rounds=kw["early_stopping_rounds"],
        )

    def cli_args(self) -> list[str]:
        """The options as command-line arguments (``--trees 50 --goss ...``), for a node process."""
        out: list[str] = []
        for name, value in self.as_args().items():
            flag = FLAGS[name]
            out += ([flag] if value else []) if isinstance(value, bool) else [flag, str(value)]
        return out


def estimator_kwargs(request: Mapping[str, Any]) -> dict[str, Any]:
    """``TrainRequest`` fields -> keyword arguments shared by the federated and plaintext estimators."""
    goss = (request["goss_top_ppm"] / 1e6, request["goss_other_ppm"] / 1e6) if request["goss_top_ppm"] else None
    return {
        "n_trees": request["n_trees"],
        "max_depth": request["max_depth"],
        "learning_rate": request["learning_rate"],
        "bins": request["bins"],
        "l2": request["l2"],
        "min_child_weight": request["min_child_weight"],
        "goss": goss,
        "early_stopping_rounds": request["early_stopping_rounds"],
        "seed": request["seed"],
    }


DEFAULTS = TrainingOptions()
NAMES = tuple(f.name for f in fields(TrainingOptions))
HELP = {f.name: f.metadata["help"] for f in fields(TrainingOptions)}
FLAGS = {f.name: f.metadata["flag"] or "--" + f.name.replace("_", "-") for f in fields(TrainingOptions)}
