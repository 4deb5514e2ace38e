"""The insight/1 roles in memory, the noise against its stated scale, the group sums of the HE door,
queries that do not parse, and the privacy-budget ledger (DuckDB and PostgreSQL)."""

from datetime import UTC, date, datetime

import numpy as np
import pytest

from tandem.crypto.he import PublicHe, SecretHe, random_masks
from tandem.errors import InputError
from tandem.insight.budget import BudgetSpent, InsightPolicy, Ledger, period_of
from tandem.insight.dp import noise_share, released_sd, share_margin, slot_scales, threshold_margin
from tandem.insight.query import parse_query
from tandem.protocols.errors import RemoteProtocolError
from tandem.protocols.insight import Bounds, GroupHolder, MeasureHolder, Release
from tandem.protocols.message import decode
from tandem.protocols.wire import EncryptedMeasures, InsightRelease
from tandem.store import open_store

HE = SecretHe.generate()                     # one key pair for the whole module: key generation takes ~1.5 s


def bounds(scales, hi=2_000_000):
    """The query's per-row bounds for a count and one measure in ``[0, hi]``, margins of one noise share."""
    return Bounds([(1, 1), (0, hi)], [share_margin(b) for b in scales], ["count", "m"])


def run_roles(values, groups, n_groups, scales, release, chunk_rows=500):
    """Both roles over encoded frames; returns them (results in ``groups_`` / ``figures_``)."""
    mh = MeasureHolder("s", values, n_groups, scales, release, HE, chunk_rows=chunk_rows, noise=noise_share,
                       bounds=bounds(scales))
    gh = GroupHolder("s", groups, n_groups, scales, release, noise=noise_share, bounds=bounds(scales))

    def deliver(role, msgs):
        out = []
        for m in msgs:
            out += role.receive(decode(m.encode()))
        return out

    gh.start()
    to_measure = deliver(gh, mh.start() + list(mh.chunks()))
    to_group = deliver(mh, to_measure)
    to_measure = deliver(gh, to_group)
    assert deliver(gh, deliver(mh, to_measure)) == []
    assert mh.done and gh.done and mh.groups_ == gh.groups_ and (mh.figures_ == gh.figures_).all()
    return mh


def data(sizes, filtered, rng, hi=2_000_000):
    """Groups of the given sizes; in each, the first ``filtered[g]`` rows are left out by the measure holder."""
    groups = np.repeat(np.arange(len(sizes)), sizes)
    values = np.stack([np.ones(len(groups), np.int64), rng.integers(0, hi, len(groups))], axis=1)
    first = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    for g, k in enumerate(filtered):
        values[first[g]:first[g] + k] = 0
    order = rng.permutation(len(groups))
    return values[order], groups[order]


def test_without_noise_the_release_is_the_exact_sums_of_groups_at_or_above_the_minimum():
    rng = np.random.default_rng(3)
    sizes, filtered = [60, 120, 49, 80, 200, 10], [0, 30, 0, 31, 0, 0]     # true counts 60 90 49 49 200 10
    values, groups = data(sizes, filtered, rng)
    groups[rng.random(len(groups)) < 0.02] = -1                             # the group holder's own filter
    mh = run_roles(values, groups, 7, [0.0, 0.0], Release(50, 0), chunk_rows=97)
    exact = np.array([values[groups == g].sum(axis=0) for g in range(7)])
    assert mh.groups_ == [g for g in range(7) if exact[g, 0] >= 50]
    assert (mh.figures_ == exact[mh.groups_]).all()


def test_noise_matches_its_stated_scale_and_small_groups_never_appear():
    """100 runs: per slot, the observed noise variance is within 25% of the stated one (about 6 standard
    errors at 2,000 samples) and its mean near 0; groups below the minimum never appear, groups well
    above it always do."""
    rng = np.random.default_rng(5)
    epsilon, k = 2.0, 20
    sensitivities = [1, 2_000_000]
    scales = slot_scales(epsilon, sensitivities)
    margin = threshold_margin(scales[0])
    big = k + 2 * margin + 10
    sizes = [big] * 20 + [60, 60, 15]
    filtered = [0] * 20 + [45, 41, 0]                                     # true counts 15, 19 (own 60), 15
    values, groups = data(sizes, filtered, rng)
    exact = np.array([values[groups == g].sum(axis=0) for g in range(len(sizes))])
    errors = []
    for _ in range(100):
        mh = run_roles(values, groups, len(sizes), scales, Release(k, margin), chunk_rows=5000)
        assert mh.groups_ == list(range(20))
        errors.append(mh.figures_ - exact[:20])
    errors = np.concatenate(errors).astype(np.float64)
    for j, scale in enumerate(scales):
        stated = released_sd(scale)
        assert abs(errors[:, j].var() / stated ** 2 - 1) < 0.25, (j, errors[:, j].std(), stated)
        assert abs(errors[:, j].mean()) < 6 * stated / np.sqrt(len(errors))
    # (one party's share alone has half the stated variance, an epsilon split of one slot a quarter: both fail)


def test_the_epsilon_split_is_certified_and_the_margin_bounds_the_tail():
    scales = slot_scales(1.0, [1, 100, 100])
    assert scales == [3.0, 300.0, 300.0]
    t = threshold_margin(2.0)
    rng = np.random.default_rng(0)
    a = np.exp(-1 / 2.0)
    draws = rng.geometric(1 - a, (2, 4, 400_000)) - 1                       # two-sided geometric = discrete Laplace
    noise = (draws[0] - draws[1]).sum(axis=0)
    assert (noise >= t).mean() == 0 and (noise >= t // 3).mean() > 0      # the margin is past everything seen
    assert threshold_margin(0.0) == 0 and released_sd(0.0) == 0


def test_group_sums_of_the_he_door_past_127_groups():
    rng = np.random.default_rng(1)
    values = rng.integers(0, 10 ** 11, (900, 8))
    groups = rng.integers(-1, 300, 900)
    public = PublicHe.from_bytes(HE.public_bytes())
    sums = public.group_sums(public.load(public.dump(HE.encrypt_slots(values))), groups, 300)
    masks = random_masks(300, 8)
    got = HE.decrypt_slots(public.load(public.dump(public.add_masks(sums, masks))), 8) - masks
    exact = np.array([values[groups == g].sum(axis=0) for g in range(300)], dtype=object)
    assert (got == exact).all()


def test_bad_messages_stop_either_role():
    rng = np.random.default_rng(2)
    values, groups = data([60, 60], [0, 0], rng)
    gh = GroupHolder("s", groups, 2, [0.0, 0.0], Release(50, 0), noise=noise_share, bounds=bounds([0, 0]))
    gh.start()
    with pytest.raises(RemoteProtocolError, match="unexpected EncryptedMeasures"):
        gh.receive(EncryptedMeasures("s", 0, 120, True, b""))
    mh = MeasureHolder("s", values, 2, [0.0, 0.0], Release(50, 0), HE, noise=noise_share, bounds=bounds([0, 0]))
    gh = GroupHolder("s", groups, 2, [0.0, 0.0], Release(50, 0), noise=noise_share, bounds=bounds([0, 0]))
    gh.start()
    gh.receive(mh.start()[0])
    with pytest.raises(RemoteProtocolError, match="out of order"):
        gh.receive(EncryptedMeasures("s", 7, 10, False, b""))
    assert gh.state.value == "error"
    gh = GroupHolder("s", groups, 2, [0.0, 0.0], Release(50, 0), noise=noise_share, bounds=bounds([0, 0]))
    gh.start()
    gh.receive(mh.start()[0])
    with pytest.raises(RemoteProtocolError, match="malformed ciphertexts"):
        gh.receive(EncryptedMeasures("s", 0, 120, True, b"\x01" * 300))
    mh = MeasureHolder("s", values, 2, [0.0, 0.0], Release(50, 0), HE, noise=noise_share, bounds=bounds([0, 0]))
    mh.start()
    masked = list(mh.chunks())
    assert masked and mh.state.value == "wait_sums"
    mh.state = mh.state.WAIT_RELEASE
    with pytest.raises(RemoteProtocolError, match="below the minimum group size"):
        mh.receive(InsightRelease("s", [0], (49).to_bytes(8, "big") + (0).to_bytes(8, "big")))
    with pytest.raises(RemoteProtocolError):
        decode(b"TDM\x01\x4a" + b"\x00\x00\x00\x02{}")                     # InsightQuery missing its fields


@pytest.mark.parametrize("raw, message", [
    ({"group_by": "bank.income_band", "measures": ["mean(bank.income)"]}, "measures must come from the market"),
    ({"group_by": "region", "measures": ["count"]}, "'region' is ambiguous"),
    ({"group_by": "market.avg_check"}, "is a number, not a group key"),
    ({"group_by": "market.region", "measures": ["share(bank.income)"]}, "needs a flag"),
    ({"group_by": "market.region", "where": ["bank.segment == 'vip'"]}, "has no label 'vip'"),
    ({"group_by": "market.region", "where": ["bank.income > 'high'"]}, "compare it with a number"),
    ({"group_by": "market.region", "epsilon": 0}, "epsilon must be a number"),
    ({"group_by": "market.region", "params": {"duty_free": 1}}, "unknown parameter 'duty_free'"),
    ({"group_by": "market.region", "measures": ["avg(bank.income)"]}, "cannot read 'avg(bank.income)'"),
    ({"group_by": "market.region", "colour": "red"}, "unknown key 'colour'"),
])
def test_queries_that_cannot_run_name_the_problem(raw, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_query(raw, "q.toml query 1")


def test_the_canonical_form_round_trips():
    q = parse_query({"group_by": ["bank.segment", "bank.age_band"], "measures": ["share(market.cross_border_buyer)",
                     "mean(market.avg_check)", "share(market.cross_border_value, market.spend)"],
                     "where": ["market.orders >= 2", "bank.region not in ['Moscow', 'Other']"],
                     "clamp": {"market.avg_check": [0, 9000]}, "params": {"duty_free_eur": 200}}, "cli")
    again = type(q).from_json(q.to_json())
    assert again == q and again.to_json() == q.to_json()
    assert q.slots == ("count", "market.cross_border_buyer", "market.avg_check", "market.cross_border_value",
                       "market.spend")
    assert q.n_groups == 18 and q.group_labels(17) == ("premium", "65+") and q.sensitivities()[2] == 900_000


def test_a_query_is_taken_at_its_own_day_or_the_asking_nodes():
    from tandem.insight.job import check_query

    unset = parse_query({"group_by": "market.region"}, "q")
    assert unset.as_of == ""
    with pytest.raises(InputError, match="names no as_of day"):
        check_query(unset, InsightPolicy())           # a peer's query without a day is refused, not run today
    asked = unset.at(date(2019, 1, 1))
    assert asked.as_of == "2019-01-01" and type(asked).from_json(asked.to_json()) == asked
    check_query(asked, InsightPolicy())
    own = parse_query({"group_by": "market.region", "as_of": "2018-06-01"}, "q")
    assert own.at(date(2019, 1, 1)).as_of == "2018-06-01"


def test_the_ledger_refuses_once_spent_survives_reopening_and_refreshes(tmp_path):
    store = str(tmp_path / "bank.duckdb")
    open_store(store, create=True).close()
    now = [datetime(2019, 1, 30, tzinfo=UTC)]
    policy = InsightPolicy(budget=2.0, refresh="monthly")
    Ledger(store, policy, lambda: now[0]).charge("market", "q1", 1.5, "group holder", "{}")
    ledger = Ledger(store, policy, lambda: now[0])                 # a new process would read the same table
    with pytest.raises(BudgetSpent, match="1.5 of 2 used, the query asks 1; it refreshes on 2019-02-01"):
        ledger.charge("market", "q2", 1.0, "group holder", "{}")
    ledger.check("telco", 2.0)                                     # per partner
    now[0] = datetime(2019, 2, 1, tzinfo=UTC)
    ledger.charge("market", "q2", 1.0, "group holder", "{}")
    assert ledger.rows().num_rows == 2 and ledger.spent("market")[:2] == (1.0, "2019-02")
    assert period_of("weekly", date(2019, 1, 2)) == ("2019-W01", date(2019, 1, 7))
    assert period_of("never", date(2019, 1, 2)) == ("all time", None)
    with pytest.raises(InputError, match="refresh must be one of"):
        InsightPolicy.from_section({"refresh": "hourly"}, "bank.toml")


def test_the_ledger_lives_in_postgresql_too(postgres_url):
    import sqlalchemy as sa

    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS insight_budget"))
    engine.dispose()
    policy = InsightPolicy(budget=1.0, refresh="never")
    Ledger(postgres_url, policy).charge("market", "p1", 0.75, "measure holder", "{}")
    with pytest.raises(BudgetSpent, match="it never refreshes"):
        Ledger(postgres_url, policy).charge("market", "p2", 0.5, "measure holder", "{}")
    assert Ledger(postgres_url, policy).spent("market")[0] == 0.75
