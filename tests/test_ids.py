import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tandem.ids import (
    InvalidIdentifier,
    normalise_email,
    normalise_emails,
    normalise_inn,
    normalise_phone,
    normalise_phones,
)
from tandem.ids.inn import complete_inn
from tandem.world.market import MARKET_PHONE_STYLES
from tandem.world.persons import format_phones, phone_number


@pytest.mark.parametrize("raw", ["+7 (916) 123-45-67", "89161234567", "8 916 123 45 67", "8(916)1234567",
                                 "+79161234567", "916-123-45-67", "  +7 916 1234567 ", "7 916 123 45 67"])
def test_russian_phone_formats_normalise_to_one_e164(raw):
    assert normalise_phone(raw) == "+79161234567"


@pytest.mark.parametrize("raw,reason", [
    ("", "empty"), (None, "empty"), (math.nan, "empty"), ("   ", "empty"),
    ("123", "too short"), ("hello", "not a number"), ("8916123456", "not a valid number for its country"),
    ("+7916123456789001122334", "too long"), ("+79161234567890", "invalid length"),
])
def test_invalid_phones_raise_with_a_reason(raw, reason):
    with pytest.raises(InvalidIdentifier) as err:
        normalise_phone(raw)
    assert err.value.reason == reason


def test_foreign_numbers_keep_their_country():
    assert normalise_phone("+1 202 555 0143") == "+12025550143"
    assert normalise_phone("8 017 212 34 56", region="BY") == "+375172123456"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 5_000_000), min_size=1, max_size=20), st.integers(0, 2**31))
def test_every_world_phone_style_normalises_to_the_same_number(indices, seed):
    national = phone_number(np.array(indices, dtype=np.int64))
    rng = np.random.default_rng(seed)
    expected = [f"+7{n}" for n in national]
    for style in MARKET_PHONE_STYLES + ["8digits"]:
        written = format_phones(rng, national, [style], [1.0])
        assert list(normalise_phones(written)[0]) == expected


@settings(max_examples=2000, deadline=None)
@given(st.sampled_from(["", "+7", "8", "7", "+8", "9", "+7 ", "8 ", "+1"]),
       st.text(alphabet="0123456789", min_size=8, max_size=12),
       st.sampled_from(["plain", "spaced", "dashed", "bracketed"]))
def test_fast_path_agrees_with_the_full_parser(prefix, digits, style):
    from tandem.ids.normalise import _parse_phone

    body = {"plain": digits, "spaced": " ".join(digits[i:i + 3] for i in range(0, len(digits), 3)),
            "dashed": "-".join(digits[i:i + 2] for i in range(0, len(digits), 2)),
            "bracketed": f"({digits[:3]}) {digits[3:]}"}[style]
    text = prefix + body
    try:
        full = _parse_phone(text, text.strip(), "RU")
    except InvalidIdentifier as exc:
        full = exc.reason
    try:
        fast = normalise_phone(text)
    except InvalidIdentifier as exc:
        fast = exc.reason
    assert fast == full, text


def _one_by_one(values):
    out = []
    for v in values:
        try:
            out.append(normalise_phone(v))
        except InvalidIdentifier as exc:
            out.append(exc.reason)
    return out


@settings(max_examples=500, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(alphabet="+78 9()-\t\n0123456789７a", max_size=16),
                          st.builds(lambda p, d: p + d, st.sampled_from(["", "+7", "8", "7", "+7 (", "8-"]),
                                    st.text(alphabet="0123456789", min_size=9, max_size=11))), max_size=30))
def test_column_path_agrees_with_one_by_one(values):
    import pyarrow as pa

    expected = _one_by_one(values)
    for column in (values, pa.array(values, pa.string()), pa.chunked_array([pa.array(values, pa.string())])):
        normalised, report = normalise_phones(column)
        assert [v if v is not None else "?" for v in normalised] == \
            [e if e.startswith("+") else "?" for e in expected]
        assert report.valid == sum(e.startswith("+") for e in expected)
        assert sum(report.invalid.values()) == len(values) - report.valid
        for reason, rows in report.examples.items():
            assert all(expected[row] == reason and values[row] == raw for row, raw in rows)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), st.integers(0, 5_000_000)), max_size=40),
       st.sampled_from([None, "+79161234567890", "+7916123456", "+70001234567", "+7 916 123 45 67"]))
def test_an_already_normalised_column_reads_as_one_by_one(indices, odd):
    """The one-pass path for columns already in E.164 (nulls allowed) gives what the full path gives, and a
    single value in another shape sends the column down the full path."""
    import pyarrow as pa

    national = phone_number(np.array([i for i in indices if i is not None], dtype=np.int64))
    it = iter(national)
    values = [None if i is None else f"+7{next(it)}" for i in indices] + ([odd] if odd else [])
    expected = [e if e.startswith("+") else None for e in _one_by_one(values)]
    assert list(normalise_phones(pa.chunked_array([pa.array(values, pa.string())]))[0]) == expected


def test_batch_report_counts_invalid_values_by_reason_with_rows():
    values, report = normalise_phones(["89161234567", "123", None, "+7 (916) 123-45-67", "123"])
    assert list(values) == ["+79161234567", None, None, "+79161234567", None]
    assert report.total == 5 and report.valid == 2 and report.n_invalid == 3
    assert report.invalid == {"too short": 2, "empty": 1}
    assert report.examples["too short"] == [(1, "123"), (4, "123")]
    assert "2/5 valid" in report.summary_line()


def test_report_merge_offsets_rows():
    _, a = normalise_emails(["a@b.ru", "bad"])
    _, b = normalise_emails(["worse", "c@d.ru"])
    a.merge(b, row_offset=2)
    assert a.total == 4 and a.valid == 2
    assert a.examples["no @"] == [(1, "bad"), (2, "worse")]


@pytest.mark.parametrize("raw,expected", [
    ("Ivan.Petrov@Mail.RU", "ivan.petrov@mail.ru"), ("  anna_k+shop@Yandex.ru ", "anna_k+shop@yandex.ru"),
    ("ivan@gmial.com", "ivan@gmial.com"),   # typos are kept, never guessed
])
def test_emails_are_trimmed_and_lower_cased_only(raw, expected):
    assert normalise_email(raw) == expected


@pytest.mark.parametrize("raw,reason", [
    ("", "empty"), (None, "empty"), ("ivan.mail.ru", "no @"), ("a@@b.ru", "more than one @"),
    ("@mail.ru", "empty local part"), ("iv an@mail.ru", "illegal character in local part"),
    ("ivan..p@mail.ru", "illegal character in local part"), ("ivan@mail", "invalid domain"),
    ("ivan@-mail.ru", "invalid domain"),
])
def test_invalid_emails_raise_with_a_reason(raw, reason):
    with pytest.raises(InvalidIdentifier) as err:
        normalise_email(raw)
    assert err.value.reason == reason


def test_inn_check_digits():
    assert normalise_inn("7707083893") == "7707083893"          # a real company INN
    assert normalise_inn(" 77 07 083893 ") == "7707083893"
    assert normalise_inn("500100732259") == "500100732259"      # a real sole-trader INN
    for raw, reason in [("7707083894", "bad check digit"), ("77070838", "wrong length"), ("77O7083893", "not digits")]:
        with pytest.raises(InvalidIdentifier) as err:
            normalise_inn(raw)
        assert err.value.reason == reason


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 9), min_size=9, max_size=9) | st.lists(st.integers(0, 9), min_size=10, max_size=10))
def test_completed_inns_validate_and_any_last_digit_change_does_not(body):
    inn = complete_inn(np.array([body]))[0]
    assert normalise_inn(inn) == inn
    wrong = inn[:-1] + str((int(inn[-1]) + 1) % 10)
    with pytest.raises(InvalidIdentifier):
        normalise_inn(wrong)
