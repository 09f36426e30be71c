"""Text that leaves the project safely: CSV cells a spreadsheet will not run, and terminal lines that cannot move the
cursor.

Class names come from folder names and run labels from forms, so either can hold ``=HYPERLINK(...)`` or an escape
sequence. Every CSV the app or the CLI writes goes through :func:`to_csv`, and every line the CLI prints through
:func:`terminal_text`.

    to_csv(pd.DataFrame({"given": ["=SUM(1+1)"]}))   # "given\\n'=SUM(1+1)\\n"
    csv_value("'=SUM(1+1)")                           # "=SUM(1+1)": what a reader of our own CSV gets back
    terminal_text("cat\\x1b[2J")                      # "cat\\\\x1b[2J"
"""

from __future__ import annotations

import csv
import re
from typing import Any

# OWASP, "CSV Injection": a cell that starts with one of these is a formula (or starts one) in Excel, LibreOffice and
# Google Sheets. Prefixing a single quote makes it text, and the quote is not shown.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def csv_cell(value: Any) -> Any:
    """``value`` as a cell no spreadsheet evaluates: a string starting a formula gets a leading ``'``; numbers stay
    numbers."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def csv_value(text: str) -> str:
    """The original text of a cell :func:`csv_cell` wrote (a reader of the project's own CSV files calls this)."""
    return text[1:] if text.startswith("'") and text[1:].startswith(FORMULA_START) else text


def to_csv(table: Any) -> str:
    """A pandas DataFrame as CSV text, every text cell (and header) neutralised with :func:`csv_cell`."""
    safe = table.copy()
    safe.columns = [csv_cell(str(c)) for c in safe.columns]
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    for column in safe.columns:
        if not (
            is_numeric_dtype(safe[column]) or is_bool_dtype(safe[column])
        ):  # text of any dtype (object, str, category)
            safe[column] = safe[column].astype(object).map(csv_cell)
    # Every text cell quoted (OWASP's advice, and a carriage return inside a cell then stays inside it); numbers bare.
    return str(safe.to_csv(index=False, quoting=csv.QUOTE_NONNUMERIC))


def terminal_text(text: str) -> str:
    """``text`` with every control character but newline and tab shown as an escape (``\\x1b``), so class names,
    labels and paths print as typed and cannot clear a screen, move the cursor or retitle a terminal."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
