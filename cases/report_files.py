"""Tables written as files people open in Excel or LibreOffice: CSV (UTF-8 with a BOM) and XLSX.

The BOM is what makes Excel read a CSV as UTF-8: without it Thai text shows as mojibake. A CSV holds one
table, so several tables go one after another with a blank line and the table's name between them.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from openpyxl import Workbook

Cell = str | int | float | None


@dataclass(frozen=True)
class Table:
    name: str  # the sheet's name (at most 31 characters in XLSX)
    headers: Sequence[str]
    rows: Iterable[Sequence[Cell]]


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _safe(value: Cell) -> Cell:
    """A text cell that a spreadsheet would run as a formula gets a leading apostrophe (CSV injection)."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def to_csv(tables: Sequence[Table]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    for i, table in enumerate(tables):
        if len(tables) > 1:
            if i:
                writer.writerow([])
            writer.writerow([table.name])
        writer.writerow(table.headers)
        writer.writerows([_safe(c) for c in row] for row in table.rows)
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def to_xlsx(tables: Sequence[Table], created: datetime | None = None) -> bytes:
    book = Workbook(write_only=True)
    if created is not None:
        # The file's own date: the export's time, so the same figures give the same file.
        book.properties.created = book.properties.modified = created.replace(tzinfo=None)
    for table in tables:
        sheet = book.create_sheet(title=table.name[:31])
        sheet.append(list(table.headers))
        for row in table.rows:
            sheet.append([_safe(c) for c in row])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
