"""The insight report in a real browser (headless Chromium): it loads without errors, every chart
decodes and is laid out, and the released figures are in its tables."""

import numpy as np
from helpers import render

from tandem.insight.dp import slot_scales, threshold_margin
from tandem.insight.query import parse_query
from tandem.insight.result import InsightResult
from tandem.report.insight_report import write_insight_report


def test_the_insight_report_renders_in_a_real_browser(tmp_path, chromium):
    q1 = parse_query({"name": "Average check by income band", "group_by": "bank.income_band",
                      "measures": ["mean(market.avg_check)"]}, "test")
    q2 = parse_query({"name": "Top categories", "group_by": "market.top_category", "measures": ["count"]}, "test")
    s1, s2 = slot_scales(1.0, q1.sensitivities()), slot_scales(1.0, q2.sensitivities())
    r1 = InsightResult(q1, "a1", [0, 1, 5], np.array([[812, 2_100_000], [1500, 4_650_000], [903, 2_800_000]]) * [1, 100],
                       s1, threshold_margin(s1[0]))
    r2 = InsightResult(q2, "b2", [], np.zeros((0, 1), np.int64), s2, threshold_margin(s2[0]))
    path = write_insight_report(tmp_path / "insight.html", [r1, r2], "Insight: demo (bank + marketplace)")
    shown = render(chromium, path)
    title, images, body, errors = shown["title"], shown["images"], shown["body"], shown["errors"]
    assert title == "Insight: demo (bank + marketplace)"
    assert len(images) == 2                                   # count and mean of the first query; none for the empty one
    for alt, complete, natural_width, shown_width in images:
        assert complete and natural_width > 200 and shown_width > 100, alt
    for text in ("Average check by income band", "20k-40k", "no salary", "2,586", "3 / 3",
                 "No group reached the minimum size"):
        assert text in body, text
    assert not errors
