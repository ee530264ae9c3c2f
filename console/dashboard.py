"""The dashboard: figures of the user's offices (the centre: all), charts, exports, a case's print view.

The figures come from cases.figures; this module chooses the scope and period from the request, puts the
words of the reader's language on the codes, and draws the charts (console.charts). Exports (CSV, XLSX)
of the figures and of the case list are audited reads, as is a print view; none of them carries the
reporter's number.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import date, datetime, time
from time import monotonic
from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint, Response, abort, current_app, render_template, request
from markupsafe import Markup
from sqlalchemy import select

from cases import figures as fig
from cases import report_files
from cases.figures import Figures, Period, Scope
from cases.models import Office, OfficeKind
from cases.reference import display_reference
from cases.report_files import Table
from cases.thai_dates import format_datetime
from console import queries
from console.audit import note_read
from console.base import case_or_404, clock, db, me, require_login, who
from console.charts import bar_chart
from console.i18n import CALLBACK_STATE_WORDS, HAZARD_WORDS, N_, STATE_WORDS, _, current_locale, words
from infra.config import Config

bp = Blueprint("dashboard", __name__, url_prefix="/console")
bp.before_request(require_login)

STEP_WORDS: dict[str, str] = {
    "routing": N_("Call to routing"),
    "approval": N_("Call to approval of the forwarding"),
    "first_action": N_("Call to first action"),
    "resolution": N_("Call to resolution"),
}
BUCKET_WORDS: dict[str, str] = {
    "on_time": N_("Called back on time"),
    "late": N_("Called back late"),
    "overdue": N_("Not yet called, overdue"),
    "waiting": N_("Not yet called, not yet due"),
    "gave_up": N_("Given up"),
    "cancelled": N_("Closed without calling"),
}
MIME = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
SHORT_SHOWN = 40  # offices short of SC-Operators listed on the page (all of them in the export)
OFFICES_SHOWN = 20  # rows of the cases-by-office chart: the centre has a thousand offices
OFFICE_TABLE = 3  # its place in figure_tables
# The page's figures are kept this long per scope and period (per app): at 100,000 cases the centre's
# figures take a few hundred ms on a busy SQLite host, and a dashboard is opened and reloaded by many
# heads for the same view. A minute's lag is harmless for a report; the exports always count afresh.
CACHE_SECONDS = 60.0
CACHE_ENTRIES = 256
_cache_lock = threading.Lock()


def _tz() -> ZoneInfo:
    cfg: Config = current_app.config["HOTLINE"]
    return cfg.timezone


def _chosen() -> tuple[Scope, Period]:
    """The scope and period the request asks for; 404 for an office that is not the user's."""
    office = request.args.get("office", type=int)
    scope = fig.scope_for(db(), me(), office)
    if scope is None:
        abort(404)
    period = Period.chosen(request.args.get("from"), request.args.get("to"), clock(), _tz())
    return scope, period


def _hours(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds / 3600, 2)


def _name(th: str, en: str, code: str, thai: bool) -> str:
    return (th if thai else en) or code


def _places(rows: list[fig.Named]) -> list[list[Any]]:
    # The locale is asked once: the centre's office table has a thousand rows.
    thai, none = current_locale() == "th", _("No province")
    return [[_name(r.name_th, r.name_en, r.code, thai) if r.code else none, r.count] for r in rows]


def figure_tables(f: Figures) -> list[Table]:
    """The figures as tables in the reader's language: the page's tables and the export's sheets."""
    count, thai = _("Cases"), current_locale() == "th"
    return [
        Table(
            _("Hazard group"),
            [_("Hazard group"), count],
            [[words(HAZARD_WORDS, h), n] for h, n in f.by_hazard],
        ),
        Table(_("State"), [_("State"), count], [[words(STATE_WORDS, s), n] for s, n in f.by_state]),
        Table(_("Province"), [_("Province"), count], _places(f.by_province)),
        Table(_("Office"), [_("Office"), count], _places(f.by_office)),
        Table(
            _("Call backs"), [_("Call back"), count], [[words(BUCKET_WORDS, b), n] for b, n in f.callbacks]
        ),
        Table(
            _("Median times"),
            [_("From the call to"), _("Median (hours)"), count],
            [[words(STEP_WORDS, step), _hours(m.seconds), m.cases] for step, m in f.medians],
        ),
        Table(
            _("Short of SC-Operators"),
            [_("Office"), _("SC-Operators")],
            [[_name(r.name_th, r.name_en, r.code, thai), r.operators] for r in f.short_offices],
        ),
    ]


@dataclass(frozen=True)
class Panel:
    """One figure on the page: its table and the chart of the table's numbers."""

    table: Table
    rows: list[list[Any]]
    chart: Markup


def _top(rows: list[list[Any]]) -> list[list[Any]]:
    """The offices with most cases, and the rest summed in one row (the export lists every office)."""
    if len(rows) <= OFFICES_SHOWN:
        return rows
    rest = rows[OFFICES_SHOWN - 1 :]
    other = _("Other offices (%(n)d)", n=len(rest))
    return [*rows[: OFFICES_SHOWN - 1], [other, sum(r[1] for r in rest)]]


def _panels(tables: list[Table]) -> list[Panel]:
    out = []
    for i, table in enumerate(tables):
        rows = [list(r) for r in table.rows]
        if i == OFFICE_TABLE:
            rows = _top(rows)
        points = [(str(r[0]), float(r[1] or 0)) for r in rows]
        out.append(Panel(table, rows, bar_chart(table.name, points)))
    return out


def _day(value: date) -> str:
    return format_datetime(
        datetime.combine(value, time(12), tzinfo=_tz()), _tz(), current_locale(), time=False
    )


def _args(scope: Scope, period: Period) -> dict[str, Any]:
    """The query string that gives the same scope and period (for the export links)."""
    args: dict[str, Any] = {"from": period.first.isoformat(), "to": period.last.isoformat()}
    if scope.office_id is not None:
        args["office"] = scope.office_id
    return args


def _page_figures(scope: Scope, period: Period) -> Figures:
    """The figures of a scope and period, counted at most CACHE_SECONDS ago."""
    cache: dict[tuple[Any, ...], tuple[float, Figures]] = current_app.extensions.setdefault(
        "dashboard_figures", {}
    )
    key = (scope.office_ids, scope.office_id, period.first, period.last, period.tz.key)
    now = monotonic()
    with _cache_lock:
        hit = cache.get(key)
    if hit is not None and now - hit[0] < CACHE_SECONDS:
        return hit[1]
    f = fig.figures(db(), scope, period, clock())
    with _cache_lock:
        if len(cache) >= CACHE_ENTRIES:  # the oldest go first
            for old in sorted(cache, key=lambda k: cache[k][0])[: CACHE_ENTRIES // 2]:
                del cache[old]
        cache[key] = (now, f)
    return f


@bp.get("/dashboard")
def dashboard() -> str:
    scope, period = _chosen()
    f = _page_figures(scope, period)
    tables = figure_tables(f)
    return render_template(
        "console/dashboard.html",
        nav="dashboard",
        f=f,
        panels=_panels(tables[:-1]),
        short=f.short_offices[:SHORT_SHOWN],
        offices=queries.queue_offices(db(), who()),
        period=period,
        args=_args(scope, period),
        first_day=_day(period.first),
        last_day=_day(period.last),
    )


def _file(body: bytes, what: str, period: Period, fmt: str) -> Response:
    name = f"{what}-{period.first:%Y%m%d}-{period.last:%Y%m%d}.{fmt}"
    return Response(
        body, mimetype=MIME[fmt], headers={"Content-Disposition": f'attachment; filename="{name}"'}
    )


def _write(tables: list[Table], fmt: str) -> bytes:
    return report_files.to_csv(tables) if fmt == "csv" else report_files.to_xlsx(tables, created=clock())


def _audit_export(what: str, fmt: str, scope: Scope, period: Period) -> None:
    detail: dict[str, Any] = {"what": what, "of": fmt, "from": period.first.isoformat()}
    detail["to"] = period.last.isoformat()
    if scope.office_id is not None:
        code = db().scalar(select(Office.code).where(Office.id == scope.office_id))
        detail["office"] = code or ""
    note_read("dashboard_exported", None, detail)


@bp.get("/dashboard/figures.<fmt>")
def export_figures(fmt: str) -> Response:
    if fmt not in MIME:
        abort(404)
    scope, period = _chosen()
    body = _write(figure_tables(fig.figures(db(), scope, period, clock())), fmt)
    _audit_export("figures", fmt, scope, period)
    return _file(body, "figures", period, fmt)


def case_table(scope: Scope, period: Period) -> Table:
    """The case list: reference, times, state, group, place, call-back; never a number or the words."""
    tz, locale = _tz(), current_locale()
    thai = locale == "th"
    provinces = {
        code: _name(th, en, code, thai)
        for code, th, en in db().execute(
            select(Office.code, Office.name_th, Office.name_en).where(Office.kind == OfficeKind.PROVINCE)
        )
    }

    def when(value: datetime | None) -> str:
        return format_datetime(value, tz, locale) if value is not None else ""

    rows = (
        [
            display_reference(r.reference),
            when(r.created_at),
            words(STATE_WORDS, r.status),
            words(HAZARD_WORDS, r.category),
            provinces.get(r.province_code or "", ""),
            _name(r.office_th, r.office_en, r.office_code, thai),
            words(CALLBACK_STATE_WORDS, r.callback_state) if r.callback_state else "",
            when(r.callback_due_at),
            when(r.callback_closed_at),
        ]
        for r in fig.case_rows(db(), scope, period)
    )
    headers = [
        _("Reference"),
        _("Opened"),
        _("State"),
        _("Hazard group"),
        _("Province"),
        _("Office"),
        _("Call back"),
        _("Call back due"),
        _("Call back closed"),
    ]
    return Table(_("Cases"), headers, rows)


@bp.get("/dashboard/cases.<fmt>")
def export_cases(fmt: str) -> Response:
    if fmt not in MIME:
        abort(404)
    scope, period = _chosen()
    body = _write([case_table(scope, period)], fmt)
    _audit_export("cases", fmt, scope, period)
    return _file(body, "cases", period, fmt)


@bp.get("/cases/<int:case_id>/print")
def print_case(case_id: int) -> str:
    """One case to print: no navigation, no forms, and no reporter's number (not even masked)."""
    found = case_or_404(case_id)
    view = queries.case_view(db(), me(), found, who())
    note_read("case_printed", found.id)
    return render_template("console/print.html", v=view, now=clock())
