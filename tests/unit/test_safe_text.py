"""lib/safe_text.py: CSV cells a spreadsheet will not run, terminal text that cannot move the cursor."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pytest

from lib.safe_text import csv_value, terminal_text, to_csv

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("cell", ['=HYPERLINK("evil.example","click")', "@SUM(1+1)", "+1+1", "-2+3", "\tx", "\rx"])
def test_csv_cells_that_start_a_formula_are_neutralised(cell: str) -> None:
    import csv

    text = to_csv(pd.DataFrame({"given": [cell, "cat"], "score": [-0.5, 0.25]}))
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows[1][0] == "'" + cell and rows[2][0] == "cat"  # a spreadsheet shows the text, runs nothing
    assert rows[1][1] == "-0.5"  # numbers stay numbers
    assert csv_value(rows[1][0]) == cell and csv_value("'quoted") == "'quoted"


def test_every_csv_the_app_writes_goes_through_safe_text() -> None:
    """No `.to_csv(` or bare download of a frame outside lib/safe_text.py; tables' own CSV export is off."""
    offenders = []
    for folder in ("lib", "ui", "views", "bench"):
        for path in (ROOT / folder).rglob("*.py"):
            if path.name != "safe_text.py" and ".to_csv(" in path.read_text():
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []
    assert "disableDataExport = true" in (ROOT / ".streamlit" / "config.toml").read_text()


def test_terminal_text_shows_escapes_instead_of_running_them() -> None:
    assert terminal_text("red\x1b[31m\x07\x9b bell") == "red\\x1b[31m\\x07\\x9b bell"
    assert terminal_text("two\nlines\tand tab") == "two\nlines\tand tab"
