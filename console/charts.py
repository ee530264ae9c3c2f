"""Bar charts as inline SVG, drawn on the server: no script, no style attribute, so the CSP stays strict.

Each chart has a <title> (and role="img" with aria-labelledby) for screen readers; the page shows the same
numbers in a table beside it. Colours are presentation attributes with at least 4.5:1 contrast on white.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from xml.sax.saxutils import escape

from markupsafe import Markup

from console.i18n import digits

BAR = "#1f4e79"  # 8.9:1 on white
TEXT = "#1a1a1a"  # 17:1 on white
LABEL_W = 230  # room for a Thai office name, cut with an ellipsis past LABEL_CHARS
LABEL_CHARS = 34
BAR_W = 300
ROW_H = 26
VALUE_W = 60
_ids = itertools.count(1)


def _cut(label: str) -> str:
    return label if len(label) <= LABEL_CHARS else label[: LABEL_CHARS - 1] + "…"


def bar_chart(title: str, rows: Sequence[tuple[str, float]], *, unit: str = "") -> Markup:
    """A horizontal bar chart of (label, value) rows, as an <svg> element safe to put in a page."""
    chart_id = f"chart-{next(_ids)}"
    peak = max((v for _l, v in rows), default=0) or 1
    height = max(len(rows), 1) * ROW_H + 8
    width = LABEL_W + BAR_W + VALUE_W
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" '
        f'aria-labelledby="{chart_id}" viewBox="0 0 {width} {height}" width="{width}" height="{height}">',
        f'<title id="{chart_id}">{escape(title)}</title>',
    ]
    for i, (label, value) in enumerate(rows):
        y = 4 + i * ROW_H
        bar = round(BAR_W * value / peak, 1) if value > 0 else 0
        shown = digits(f"{value:g}{unit}")  # the console's digits (HOTLINE_CONSOLE_DIGITS), as the table
        parts += [
            f'<text x="{LABEL_W - 8}" y="{y + 17}" text-anchor="end" fill="{TEXT}" font-size="13">'
            f"{escape(_cut(label))}</text>",
            f'<rect x="{LABEL_W}" y="{y + 4}" width="{bar}" height="{ROW_H - 8}" fill="{BAR}"/>',
            f'<text x="{LABEL_W + bar + 6}" y="{y + 17}" fill="{TEXT}" font-size="13">{escape(shown)}</text>',
        ]
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every label and title above went through escape()
