"""The scorecard report (issue 15, deliverable 6) in a real browser: every section and chart is there,
the points table holds the base points and every bin of every selected feature, the marketplace's
features show only their opaque names and bin indices, and the stability section colours a made-up
drift with the right traffic lights. The model part is built from tandem's own binning, selection and
fit functions (the same ones the federated job runs), without a network run."""

import dataclasses
import json

import numpy as np
import pytest
from helpers import render

from tandem.errors import InputError
from tandem.learn.metrics import summary
from tandem.learn.scorecard.fit import Fitted, calibrate, newton_step, step_scores
from tandem.learn.scorecard.gram import quantise_woe
from tandem.learn.scorecard.model import active_model
from tandem.learn.scorecard.moments import Moments
from tandem.learn.scorecard.optimal import bin_own
from tandem.learn.scorecard.options import BinningOptions, ScorecardOptions
from tandem.learn.scorecard.points import Scaling, model_points
from tandem.learn.scorecard.selection import select
from tandem.learn.scorecard.stability import feature_stability, score_reference, score_stability, traffic_light
from tandem.report.scorecard_report import LIGHT_COLOURS, write_scorecard_report
from tandem.report.scorecard_tables import points_of_pd, points_rows

MARKET = {"f0": "returns_ratio", "f1": "traffic_minutes", "f2": "junk_clicks"}  # real name -> never shown
LEAK = 7777.125  # a passive edge smuggled into the model part: never shown


@pytest.fixture(scope="module")
def scorecard():
    rng = np.random.default_rng(3)
    n, n_train = 4000, 3000
    z = rng.normal(size=(n, 5))
    y = (rng.random(n) < 1 / (1 + np.exp(-(-1.5 + 0.9 * z[:, 0] - 0.7 * z[:, 1] + 0.8 * z[:, 2] - 0.6 * z[:, 3]))))
    y = y.astype(np.int64)
    income = np.round(np.exp(10 - 0.4 * z[:, 0]))
    income[rng.random(n) < 0.04] = -999
    debt = np.where(rng.random(n) < 0.05, np.nan, z[:, 1])
    own = {"income": income, "debt": debt, "noise": rng.normal(size=n)}
    market = {"f0": z[:, 2], "f1": -z[:, 3], "f2": rng.normal(size=n)}
    binning = BinningOptions(special_codes=(-999,), min_bin_rows=50)
    opts = ScorecardOptions()
    tr = slice(0, n_train)
    prebins, tables, woe = {}, {}, {}
    for name, x in {**own, **market}.items():
        p, t = bin_own(name, x[tr], y[tr], binning)
        if name in market:                   # the label holder never learns a passive feature's edges
            t = dataclasses.replace(t, edges=None)
        else:
            prebins[name] = p
        tables[name] = t
        woe[name] = quantise_woe(t.woe)[t.assign[p.transform(x)]]
    iv = {name: t.iv for name, t in tables.items()}
    passing = [name for name in tables if iv[name] >= opts.iv_min]
    X = np.column_stack([woe[name] for name in passing])
    selection = select(iv, Moments.from_rows(passing, X[tr], y[tr]), opts)
    cols = [passing.index(name) for name in selection.selected]
    step = newton_step(Moments.from_rows(selection.selected, X[tr][:, cols], y[tr]), opts.l2)
    fitted = Fitted.from_step(selection.selected, step, calibrate(step_scores(step, X[tr][:, cols]), y[tr]))
    model = active_model("m1", "bank", "market", fitted, prebins, tables, selection, opts)
    model = json.loads(json.dumps(model))    # as the model file holds it
    for entry in model["features"]:
        if entry["owner"] == "market":
            entry["edges"] = [LEAK]
            entry["prebins"] = {"name": MARKET[entry["name"]], "layout": ["numeric", 2, 0], "edges": [LEAK]}
    pd_test = fitted.pd(X[n_train:][:, cols])
    result = {"metrics": summary(y[n_train:], pd_test), "selection": [vars(r) for r in selection.rows],
              "test_scores": pd_test.tolist(), "test_labels": y[n_train:].tolist(), "n_train": n_train,
              "n_test": n - n_train, "n_features_in": len(iv)}
    return {"model": model, "result": result, "fitted": fitted, "own": own, "n_train": n_train,
            "scaling": Scaling.of(opts)}


def test_the_built_model_is_a_real_scorecard(scorecard):
    model, fitted = scorecard["model"], scorecard["fitted"]
    owners = {f["name"]: f["owner"] for f in model["features"]}
    assert "bank" in owners.values() and "market" in owners.values()   # both parties' features selected
    assert scorecard["result"]["metrics"]["auc"] > 0.75
    # the points of the model part reproduce the model's score: base + Σ points = offset - factor·logit
    table, scaling = model_points(model, scorecard["scaling"]), scorecard["scaling"]
    bins = np.zeros((1, len(table.names)), dtype=np.int64)
    woe = np.array([[model["features"][j]["woe"][0] for j in range(len(table.names))]])
    assert table.scores(bins)[0] == pytest.approx(float(scaling.score_from_logit(fitted.logit(woe))[0]), abs=1e-6)


def test_points_rows_hold_base_points_and_every_bin(scorecard):
    model, scaling = scorecard["model"], scorecard["scaling"]
    rows = points_rows(model, scaling)
    table = model_points(model, scaling)
    assert rows[0]["label"] == "base points" and rows[0]["points"] == round(table.base)
    assert len(rows) == 1 + sum(len(f["counts"]) for f in model["features"])
    for r in rows[1:]:
        assert r["points"] == round(r["points_exact"])
        assert r["points_exact"] == pytest.approx(-scaling.factor * next(
            f["coef"] for f in model["features"] if f["name"] == r["feature"]) * r["woe"], abs=1e-9)
    market = [r for r in rows if r["owner"] == "market"]
    assert market and all(r["label"] == f"bin {r['bin']}" for r in market)
    json.dumps(rows)                                                   # JSON-ready


def _stability(scorecard):
    """A made-up later period: income unchanged (green), debt shifted by 1.5 sd (red), the score drifted
    down by 16 points (amber)."""
    model, scaling, own, n_train = (scorecard[k] for k in ("model", "scaling", "own", "n_train"))
    entries = {f["name"]: f for f in model["features"] if f["owner"] == "bank"}
    dev_points = points_of_pd(scorecard["result"]["test_scores"], scaling)
    features = {}
    for name, entry in entries.items():
        x = own[name][:n_train]
        new = x + 1.5 if name == "debt" else x
        features[name] = feature_stability(entry, new)
    score = score_stability(score_reference(dev_points), dev_points - 16)
    return {"period": "2026-11 (made up)", "score": score, "features": features}


def test_the_scorecard_report_renders_in_a_real_browser(tmp_path, chromium, scorecard):
    model, result, scaling = scorecard["model"], scorecard["result"], scorecard["scaling"]
    stability = _stability(scorecard)
    lights = {"score PSI": stability["score"]["light"]} | {f"CSI {n}": t["light"] for n, t in stability["features"].items()}
    assert lights["CSI income"] == "green" and lights["CSI debt"] == "red" and lights["score PSI"] == "amber"
    path = write_scorecard_report(tmp_path / "scorecard.html", model, result, scaling, stability)
    shown = render(chromium, path, screenshot=tmp_path / "scorecard.png", script="""(() => ({
        sections: [...document.querySelectorAll('h2')].map(h => h.id),
        lights: [...document.querySelectorAll('table.lights tr')].slice(1).map(tr => [tr.cells[0].innerText,
                 tr.cells[1].className, getComputedStyle(tr.cells[1]).backgroundColor]),
        points: [...document.querySelectorAll('table.points tr')].slice(1).map(tr => [...tr.cells].map(c => c.innerText)),
    }))()""")
    page, body, images = shown["script"], shown["body"], shown["images"]
    assert not shown["errors"]
    assert shown["title"] == "Scorecard m1 (bank + market)"
    assert page["sections"] == ["summary", "selection", "points", "bins", "discrimination", "calibration", "stability"]
    selected = [f["name"] for f in model["features"]]
    alts = [alt for alt, *_ in images]
    for alt in ("IV by feature", "ROC curve", "KS", "Calibration by score band", "Score PSI",
                *[f"WoE and event rate: {n}" for n in selected], *[f"CSI {n}" for n in stability["features"]]):
        assert alt in alts, alt
    for alt, complete, natural_width, shown_width in images:
        assert complete and natural_width > 200 and shown_width > 100, alt     # real PNGs, decoded and laid out
    # headline metrics and the selection table with every feature's status
    m = result["metrics"]
    for text in (f"{m['auc']:.4f}", f"{m['ks']:.4f}", f"{m['gini']:.4f}", "3,000", "1,000"):
        assert text in body
    for r in result["selection"]:
        assert r["name"] in body and r["status"] in body
    # the points table: base points, then every bin of every selected feature, rounded
    rows = points_rows(model, scaling)
    assert page["points"][0][0] == "base points" and page["points"][0][3] == f"{rows[0]['points']:,}"
    assert len(page["points"]) == len(rows)
    assert [p[3] for p in page["points"]] == [f"{r['points']:,}" for r in rows]
    assert {p[0] for p in page["points"]} - {""} == {"base points", *selected}
    assert "special -999" in body and "missing" in body            # the bank's own bins keep their labels
    # the marketplace's features: opaque names and bin indices only
    for real in MARKET.values():
        assert real not in body and real not in path.read_text()
    assert "7777.1" not in body and "7777.1" not in path.read_text()   # "." is not base64: no false hit
    market = [p for p in page["points"] if p[1] == "market"]
    assert market
    # traffic lights with their colours
    rgb = {k: "rgb({}, {}, {})".format(*(int(v[i:i + 2], 16) for i in (1, 3, 5))) for k, v in LIGHT_COLOURS.items()}
    assert [row[0] for row in page["lights"]] == list(lights)
    for label, cls, colour in page["lights"]:
        assert cls == f"light light-{lights[label]}" and colour == rgb[lights[label]], label
    assert traffic_light(stability["features"]["debt"]["psi"]) == "red"
    assert (tmp_path / "scorecard.png").stat().st_size > 50_000


def test_a_report_refuses_another_partys_stability(tmp_path, scorecard):
    stability = _stability(scorecard)
    passive = next(f["name"] for f in scorecard["model"]["features"] if f["owner"] == "market")
    stability["features"][passive] = stability["features"]["income"]
    with pytest.raises(InputError, match="each party reports its own features"):
        write_scorecard_report(tmp_path / "r.html", scorecard["model"], scorecard["result"], scorecard["scaling"],
                               stability)
    assert not (tmp_path / "r.html").exists()
