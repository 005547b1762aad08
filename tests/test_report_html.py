"""Issue 31: results/report.html is rendered by a Markdown library: its text shows no raw Markdown
(`**`, `*…*`, backticks, `- ` items, `#` headings, pipe-table rows), every section title and id is
its own, and no table cell reads `inf` or `nan`. Built from
tests/helpers.aggregated_with_samples (the run test_aggregate.py::test_intervals_lora_vs_full_and_curves
checks: samples, intervals, LoRA vs full, both scorers, a Recovered % whose denominator has no standard error: gap_z = ±inf)."""
import re
from collections import Counter
from html.parser import HTMLParser

import pytest

from tests.conftest import demo_config
from tests.helpers import aggregated_with_samples

RAW = {"bold": re.compile(r"\*\*"), "emphasis": re.compile(r"(?<![\w*])\*[^\s*][^*]*\*(?![\w*])"),
       "code": re.compile(r"`"), "list item": re.compile(r"^\s*[-*] ", re.M),
       "heading": re.compile(r"^\s*#{1,6} ", re.M), "table rule": re.compile(r"\|\s*:?-{3,}")}


class Text(HTMLParser):
    """The page's visible text outside <pre>, <code>, <style>, <script>; titles; ids; table cells."""

    SKIP = {"pre", "code", "style", "script"}

    def __init__(self):
        super().__init__()
        self.stack, self.text, self.titles, self.ids, self.cells = [], [], [], [], []

    def handle_starttag(self, tag, attrs):
        self.stack.append(tag)
        self.ids += [v for k, v in attrs if k == "id"]
        if tag in ("td", "th", "h2", "h3"):
            (self.cells if tag in ("td", "th") else self.titles).append("")

    def handle_endtag(self, tag):
        while self.stack and self.stack.pop() != tag:
            pass

    def handle_data(self, data):
        if not self.SKIP & set(self.stack):
            self.text.append(data)
            if "td" in self.stack or "th" in self.stack:
                self.cells[-1] += data
            elif {"h2", "h3"} & set(self.stack) and "h4" not in self.stack:
                self.titles[-1] += data


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    import pandas as pd

    import report

    results = tmp_path_factory.mktemp("run")
    aggregated_with_samples(results)
    rec = pd.read_csv(results / "recovered.csv")  # a skyline and base both at 100 %: se 0, gap_z inf
    rec.loc[0, ["gap_z", "recovered_pct"]] = [float("inf"), float("nan")]
    rec.to_csv(results / "recovered.csv", index=False)
    parsed = Text()
    parsed.feed(report.build(results, demo_config()))
    return parsed


def test_no_raw_markdown(page):
    text = "".join(page.text)
    for kind, pattern in RAW.items():
        hits = [text[max(m.start() - 60, 0):m.end() + 60] for m in pattern.finditer(text)]
        assert not hits, (kind, hits[:3])


def test_titles_and_ids_are_distinct(page):
    assert [t for t, n in Counter(t.strip() for t in page.titles).items() if n > 1] == []
    assert [i for i, n in Counter(page.ids).items() if n > 1] == []
    assert "Table 1b. 95 % intervals" in page.titles and "95 % intervals under the second scorer" in page.titles


def test_no_raw_numbers_in_tables(page):
    raw = [c for c in page.cells if c.strip().lower() in ("inf", "-inf", "nan", "none", "true", "false")]
    assert raw == []
    assert "+∞" in page.cells  # the denominator's z where both standard errors are 0
