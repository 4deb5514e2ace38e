"""World calibration: ``defaults.toml`` merged with an optional user TOML file."""

from __future__ import annotations

import os
import tomllib
from datetime import date
from importlib import resources
from pathlib import Path

from tandem.errors import InputError

MAX_PERSONS = 40_000_000  # the phone numbering plan of the generator holds this many


def load_config(path: str | os.PathLike | None = None) -> dict:
    """Return the calibration as nested dicts; values in ``path`` override the defaults.

    Unknown sections or keys in ``path`` are an error (a typo must not be silently ignored).
    """
    with resources.files("tandem.world").joinpath("defaults.toml").open("rb") as f:
        config = tomllib.load(f)
    if path is None:
        return _finish(config)
    path = Path(path)
    try:
        with path.open("rb") as f:
            user = tomllib.load(f)
    except OSError as exc:
        raise InputError(f"{path}: cannot read world config ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: not valid TOML ({exc})") from None
    for section, values in user.items():
        if section not in config or not isinstance(values, dict):
            raise InputError(f"{path}: unknown section [{section}]")
        for key, value in values.items():
            if key not in config[section]:
                raise InputError(f"{path}: unknown key '{key}' in [{section}]")
            if type(value) is not type(config[section][key]) and not (
                isinstance(value, (int, float)) and isinstance(config[section][key], (int, float))
            ):
                raise InputError(f"{path}: [{section}] {key} must be {type(config[section][key]).__name__}")
            config[section][key] = value
    return _finish(config)


def _finish(config: dict) -> dict:
    config["time"]["snapshot_date"] = date.fromisoformat(config["time"]["snapshot"])
    regions = config["regions"]
    if not len(regions["names"]) == len(regions["weights"]) == len(regions["income_multiplier"]):
        raise InputError("world config: [regions] names, weights and income_multiplier differ in length")
    return config
