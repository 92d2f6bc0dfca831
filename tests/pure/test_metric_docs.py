"""The metric table in docs/operations.md and the README's metric list name every metric the
package reports (``METRIC_NAMES``), so the docs cannot drift from the gauges."""

from __future__ import annotations

import re
from pathlib import Path

from flink_llm_udf import METRIC_NAMES

ROOT = Path(__file__).resolve().parents[2]


def test_the_operations_table_is_metric_names_in_order_with_their_wording() -> None:
    text = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    section = text.split("## Metrics", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(\w+)` \| (.+) \|$", section, re.MULTILINE)
    assert dict(rows) == METRIC_NAMES
    assert [name for name, _ in rows] == list(METRIC_NAMES)


def test_the_readme_names_every_metric() -> None:
    section = (ROOT / "README.md").read_text(encoding="utf-8").split("## Metrics", 1)[1].split("\n## ", 1)[0]
    missing = [name for name in METRIC_NAMES if f"`{name}`" not in section]
    assert not missing, missing
