"""The training options: one schema for the command line, the wire request, the estimators and
``BoostParams``; and the typed link and training results."""

import pytest
import typer

from tandem.cli import app
from tandem.crypto.he import HeError, SecretHe
from tandem.crypto.key_size import SMALL_TEST_KEYS
from tandem.errors import InputError
from tandem.learn.boosting import HistBoostingClassifier
from tandem.learn.options import DEFAULTS, NAMES, TrainingOptions, estimator_kwargs
from tandem.learn.result import TrainingResult
from tandem.learn.rounds import BoostParams
from tandem.learn.splitting import SplitParams
from tandem.learn.vertical import VerticalBoostingClassifier
from tandem.link.result import EntityLink, KeyCounts, LinkResult
from tandem.offers.train import ARGS as PROPENSITY_ARGS


def _options(command: str) -> dict:
    """The command's options by parameter name, as Typer builds them for ``tandem``."""
    cmd = typer.main.get_command(app).commands[command]      # type: ignore[attr-defined]
    return {p.name: p for p in cmd.params if p.param_type_name == "option"}


@pytest.mark.parametrize("command", ["train", "node"])
def test_the_commands_offer_every_training_option_with_its_default(command):
    options = _options(command)
    for name in NAMES:
        assert options[name].default == getattr(DEFAULTS, name), name
        assert options[name].help
    assert options["l2"].opts == ["--l2"] and options["he"].opts == ["--he"]
    assert options["goss"].opts == ["--goss"] and not options["goss"].secondary_opts       # no --no-goss
    assert options["first_tree_active_only"].opts == ["--first-tree-active-only"]
    assert options["test_fraction"].opts == ["--test-fraction"]


def test_propensity_offers_five_options_with_the_offer_models_defaults():
    options = _options("propensity")
    shown = {n for n in NAMES if n in options}
    assert shown == {"trees", "max_depth", "learning_rate", "bins", "key_bits"}
    for name in shown:
        assert options[name].default == PROPENSITY_ARGS.get(name, getattr(DEFAULTS, name)), name


def test_the_estimators_and_boost_params_default_to_the_schema():
    kw = DEFAULTS.estimator_kwargs()
    ref = HistBoostingClassifier().get_params()
    fed = VerticalBoostingClassifier().get_params()
    for name in ("n_trees", "max_depth", "learning_rate", "bins", "l2", "min_child_weight", "goss",
                 "early_stopping_rounds"):
        assert ref[name] == fed[name] == kw[name], name
    assert ref["validation_fraction"] == fed["validation_fraction"] == DEFAULTS.validation_fraction
    assert (fed["scheme"], fed["key_bits"], fed["first_tree_active_only"]) == (DEFAULTS.he, DEFAULTS.key_bits,
                                                                              DEFAULTS.first_tree_active_only)
    params = BoostParams()
    assert (params.n_trees, params.max_depth, params.learning_rate, params.bins) == (
        DEFAULTS.trees, DEFAULTS.max_depth, DEFAULTS.learning_rate, DEFAULTS.bins)
    assert params.split == SplitParams(DEFAULTS.l2, DEFAULTS.min_child_weight)
    assert DEFAULTS.boost_params() == BoostParams(seed=0)


def test_the_wire_request_carries_fractions_in_ppm_and_goss_only_when_on():
    off = TrainingOptions(goss_top=0.3).request_fields()
    assert (off["goss_top_ppm"], off["goss_other_ppm"]) == (0, 0)
    assert off["test_fraction_ppm"] == 200_000 and off["validation_fraction_ppm"] == 100_000
    on = TrainingOptions(goss=True, goss_top=0.3, goss_other=0.15, trees=7, early_stopping=2)
    fields = on.request_fields()
    assert (fields["goss_top_ppm"], fields["goss_other_ppm"], fields["n_trees"]) == (300_000, 150_000, 7)
    kw = estimator_kwargs(fields)
    assert kw["goss"] == (0.3, 0.15) and kw["early_stopping_rounds"] == 2 and kw == on.estimator_kwargs()
    assert estimator_kwargs(off)["goss"] is None


def test_from_args_fills_defaults_and_refuses_unknown_names():
    opts = TrainingOptions.from_args({"trees": 9})
    assert opts.trees == 9 and opts.with_args({"trees": 9}) == opts and opts.bins == DEFAULTS.bins
    assert TrainingOptions.from_args(opts.as_args()) == opts
    with pytest.raises(InputError, match="unknown training option"):
        TrainingOptions.from_args({"tree": 9})


def test_cli_args_give_a_node_process_the_same_options():
    opts = TrainingOptions(trees=3, goss=True, l2=0.5, he="paillier")
    args = opts.cli_args()
    assert args[args.index("--trees") + 1] == "3" and args[args.index("--l2") + 1] == "0.5"
    assert "--goss" in args and "--first-tree-active-only" not in args and "--he" in args
    proc_options = _options("node")
    flags = {flag for option in proc_options.values() for flag in option.opts}
    assert {a for a in args if a.startswith("--")} <= flags


@pytest.mark.parametrize("change, message", [
    ({"test_fraction": 1.0}, "--test-fraction and --validation-fraction"),
    ({"validation_fraction": 0.0}, "--test-fraction and --validation-fraction"),
    ({"he": "rsa"}, "--he must be ou or paillier, got 'rsa'"),
    ({"key_bits": 512}, "--key-bits must be between 1024 and 4096, got 512"),     # the suite's floor
    ({"bins": 2}, "bins must be between 3 and 256, got 2"),
    ({"trees": 0}, "trees and max depth must be >= 1"),
    ({"goss": True, "goss_top": 0.8, "goss_other": 0.5}, "GOSS rates"),
    ({"min_child_weight": 0.0}, "min child weight > 0"),
])
def test_check_names_the_bad_option(change, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(")):
        DEFAULTS.with_args(change).check()
    assert DEFAULTS.check() is DEFAULTS


def test_keys_below_2048_bits_are_refused_outside_the_test_suite(monkeypatch):
    monkeypatch.delenv(SMALL_TEST_KEYS)
    with pytest.raises(InputError, match="--key-bits must be between 2048 and 4096, got 1024"):
        DEFAULTS.with_args({"key_bits": 1024}).check()
    with pytest.raises(HeError, match="key size must be between 2048 and 4096 bits, got 1024"):
        SecretHe.generate("ou", 1024)                        # every caller, not only the command line
    monkeypatch.setenv(SMALL_TEST_KEYS, "1")
    assert DEFAULTS.with_args({"key_bits": 1024}).check().key_bits == 1024


def test_link_result_round_trips_through_its_event():
    result = LinkResult("bank", "market", "s1", False, True, 1.5, {"node": 100, "workers": 200}, "openssl",
                        {"customers": EntityLink(10, 7, {"phone": KeyCounts(12, 7, {"empty": 2}, 1, True, 3, 0.4, 5, True)})},
                        phases={"read": 0.1, "link": 1.3, "write": 0.1})
    event = {"event": "result", **result.to_json()}
    assert LinkResult.from_json(event) == result
    summary = result.summary_json(2.0)
    assert summary == {"backend": "openssl", "count_only": False, "incremental": True, "seconds": 2.0,
                       "protocol_seconds": 1.5, "phases": {"read": 0.1, "link": 1.3, "write": 0.1},
                       "entities": {"customers": {"linked": 7, "consented": 10, "keys": {"phone": 7},
                                                  "blinded_sent": {"phone": 3}, "multiplied": {"phone": 5},
                                                  "resumed": {"phone": True}}}}


def test_training_result_round_trips_and_a_passive_party_reports_no_metrics():
    active = TrainingResult("bank", "market", "m.json", 100, 80, 20, {"auc": 0.7}, n_trees=5,
                            test_ids=["a"], test_scores=[0.5], test_labels=[1])
    assert TrainingResult.from_json({"event": "result", **active.to_json()}) == active
    passive = TrainingResult("market", "bank", "p.json", 50, 80, 20)
    assert set(passive.to_json()) == {"node", "peer", "model_path", "bytes_sent", "n_train", "n_test",
                                        "rows_left_out"}
    assert TrainingResult.from_json(passive.to_json()) == passive and not passive.is_label_holder
