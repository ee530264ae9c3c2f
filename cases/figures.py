"""The dashboard's figures for a scope of offices and a period: counts, call-back timeliness, medians.

Four passes over an index of the period's cases: the counts by hazard group and state (conditional
counts in one row), by office and province (one GROUP BY of both, then one query for their names), the
call-backs' buckets, and the medians from the cases' milestone columns (cases.milestones; PostgreSQL
takes them with percentile_cont, SQLite hands back the durations and Python sorts them); then the offices
short of SC-Operators. A period is a range of whole days in the service's time zone; a case belongs to
it by when it was opened (the call).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Float, case, distinct, func, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from cases.models import (
    MILESTONES,
    OPEN_CALLBACK_STATES,
    Callback,
    CallbackState,
    Case,
    CaseStatus,
    HazardGroup,
    Office,
    OfficeKind,
)
from cases.notifications.inbox import overseen_office_ids
from cases.offices import central_office_id
from cases.staff import Role, RoleAssignment, User

DEFAULT_DAYS = 30
MAX_DAYS = 3 * 366  # a longer period is cut to this: the page stays quick
# The steps timed from the call (Case.created_at) to the first CaseEvent of each action (its milestone).
STEPS: tuple[tuple[str, str], ...] = (
    ("routing", "route"),
    ("approval", "approve"),
    ("first_action", "record_action"),
    ("resolution", "resolve"),
)
# How a call-back stands against its first due time (Callback.first_due_at: the promise, never moved).
CALLBACK_BUCKETS = ("on_time", "late", "overdue", "waiting", "gave_up", "cancelled")
OPERATOR_ROLES = (Role.OPERATOR, Role.HEAD)  # a head is an SC-Operator by position
ENOUGH_OPERATORS = 2  # the guideline: an office should have at least two SC-Operators


class seconds_between(FunctionElement[float]):
    """later - earlier in seconds (a float), for the dialect at hand; NULL when either is NULL."""

    type = Float()
    name = "seconds_between"
    inherit_cache = True


@compiles(seconds_between, "sqlite")
def _seconds_sqlite(element: seconds_between, compiler: SQLCompiler, **kw: Any) -> str:
    later, earlier = (compiler.process(c, **kw) for c in element.clauses)
    return f"((julianday({later}) - julianday({earlier})) * 86400.0)"


@compiles(seconds_between, "postgresql")
def _seconds_postgresql(element: seconds_between, compiler: SQLCompiler, **kw: Any) -> str:
    later, earlier = (compiler.process(c, **kw) for c in element.clauses)
    return f"CAST(EXTRACT(EPOCH FROM ({later} - {earlier})) AS DOUBLE PRECISION)"


@dataclass(frozen=True)
class Period:
    """Whole days, first and last included, in the time zone `tz`."""

    first: date
    last: date
    tz: ZoneInfo

    def bounds(self) -> tuple[datetime, datetime]:
        """[start, end) as aware datetimes: local midnight of the first day to the one after the last."""
        start = datetime.combine(self.first, time(0), tzinfo=self.tz)
        end = datetime.combine(self.last + timedelta(days=1), time(0), tzinfo=self.tz)
        return start, end

    @classmethod
    def chosen(cls, first: str | None, last: str | None, now: datetime, tz: ZoneInfo) -> Period:
        """The period a form asked for (ISO dates); the last 30 days up to today when missing or wrong."""
        today = now.astimezone(tz).date()
        end = _parse_date(last) or today
        start = _parse_date(first) or end - timedelta(days=DEFAULT_DAYS - 1)
        if start > end:
            start, end = end, start
        if (end - start).days >= MAX_DAYS:
            start = end - timedelta(days=MAX_DAYS - 1)
        return cls(start, end, tz)


def _parse_date(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


@dataclass(frozen=True)
class Scope:
    """The offices whose cases count: None for every office (the centre's whole view, drafts included).

    A scope of offices leaves drafts out: a draft is the call centre's until an agent routes it, even
    when the IVR guessed its province (cases.access.visibility says the same).
    """

    office_ids: frozenset[int] | None
    office_id: int | None = None  # the office chosen, if any (its own and those below are office_ids)


def offices_below(session: Session, office_id: int) -> set[int]:
    """The office and every office under it (a province and its districts)."""
    seen, frontier = {office_id}, {office_id}
    while frontier:
        frontier = set(session.scalars(select(Office.id).where(Office.parent_id.in_(frontier)))) - seen
        seen |= frontier
    return seen


def scope_for(session: Session, user: User, office_id: int | None = None) -> Scope | None:
    """What the user's dashboard covers: their offices and those below (the centre: all); None if the
    office asked for is not theirs. Every role counts: an SC-Action reports on their office too."""
    allowed = overseen_office_ids(session, user, tuple(Role))
    if allowed is not None and not allowed:
        return None
    if office_id is None:
        return Scope(None if allowed is None else frozenset(allowed))
    if allowed is not None and office_id not in allowed:
        return None
    if office_id == central_office_id(session):
        return Scope(None, office_id)
    return Scope(frozenset(offices_below(session, office_id)), office_id)


def case_conditions(scope: Scope, period: Period) -> list[ColumnElement[bool]]:
    start, end = period.bounds()
    conditions = [Case.created_at >= start, Case.created_at < end]
    if scope.office_ids is not None:
        conditions += [Case.office_id.in_(scope.office_ids), Case.status != CaseStatus.DRAFT]
    return conditions


@dataclass(frozen=True)
class Named:
    """A count under a code with its names (an office, a province)."""

    code: str
    name_th: str
    name_en: str
    count: int


@dataclass(frozen=True)
class ShortOffice:
    office_id: int
    code: str
    name_th: str
    name_en: str
    operators: int


@dataclass(frozen=True)
class Median:
    seconds: float | None  # None when no case of the period reached the step
    cases: int  # how many cases reached it


@dataclass(frozen=True)
class Figures:
    period: Period
    scope: Scope
    total: int
    by_hazard: list[tuple[str, int]]  # every group, in the order of HazardGroup
    by_state: list[tuple[str, int]]  # every state, in the order of CaseStatus
    by_province: list[Named]  # most cases first; "" for cases without a province
    by_office: list[Named]  # most cases first
    callbacks: list[tuple[str, int]]  # CALLBACK_BUCKETS in order
    medians: list[tuple[str, Median]]  # STEPS in order
    short_offices: list[ShortOffice]


def _tally(
    session: Session, conditions: Sequence[ColumnElement[bool]]
) -> tuple[int, dict[str, int], dict[str, int]]:
    """The period's cases (all, by hazard group, by state), counted in one pass over the index.

    One row of conditional counts (COUNT(CASE WHEN ...)) where two GROUP BYs each scanned the index
    and sorted it: measured at 100,000 cases, the centre's 30 days, about half the time.
    """
    hazards, states = [str(h) for h in HazardGroup], [str(s) for s in CaseStatus]
    columns = [func.count()]
    columns += [func.count(case((Case.category == h, 1))) for h in hazards]
    columns += [func.count(case((Case.status == s, 1))) for s in states]
    total, *row = (int(n) for n in session.execute(select(*columns).where(*conditions)).one())
    by_hazard = dict(zip(hazards, row[: len(hazards)], strict=True))
    return total, by_hazard, dict(zip(states, row[len(hazards) :], strict=True))


def _places(session: Session, conditions: Sequence[ColumnElement[bool]]) -> tuple[list[Named], list[Named]]:
    """The period's cases by province and by office: one GROUP BY of both (about a thousand pairs at the
    centre) summed here, and the names of both in one query."""
    stmt = (
        select(Case.office_id, Case.province_code, func.count())
        .where(*conditions)
        .group_by(Case.office_id, Case.province_code)
    )
    provinces: dict[str, int] = {}
    offices: dict[int, int] = {}
    for office_id, code, n in session.execute(stmt):
        provinces[code or ""] = provinces.get(code or "", 0) + int(n)
        offices[office_id] = offices.get(office_id, 0) + int(n)
    codes = [c for c in provinces if c]
    names = select(Office.id, Office.kind, Office.code, Office.name_th, Office.name_en).where(
        Office.id.in_(list(offices)) | ((Office.kind == OfficeKind.PROVINCE) & Office.code.in_(codes))
    )
    province_names: dict[str, tuple[str, str, str]] = {}
    office_names: dict[int, tuple[str, str, str]] = {}
    for office_id, kind, code, name_th, name_en in session.execute(names):
        if office_id in offices:
            office_names[office_id] = (code, name_th, name_en)
        if kind == OfficeKind.PROVINCE and code in provinces:
            province_names[code] = (code, name_th, name_en)
    return _named(provinces, province_names), _named(offices, office_names)


def _named(counts: dict[Any, int], names: dict[Any, tuple[str, str, str]]) -> list[Named]:
    rows = [Named(*names.get(key, (str(key or ""), "", "")), n) for key, n in counts.items()]
    return sorted(rows, key=lambda r: (-r.count, r.code))


def _callbacks(
    session: Session, conditions: Sequence[ColumnElement[bool]], now: datetime
) -> list[tuple[str, int]]:
    reached = Callback.state == CallbackState.REACHED
    is_open = Callback.state.in_([str(s) for s in OPEN_CALLBACK_STATES])
    bucket = case(
        (reached & (Callback.closed_at <= Callback.first_due_at), "on_time"),
        (reached, "late"),
        (is_open & (Callback.first_due_at < now), "overdue"),
        (is_open, "waiting"),
        (Callback.state == CallbackState.GAVE_UP, "gave_up"),
        else_="cancelled",
    ).label("bucket")
    # The call-backs of the period's cases (a case has at most one), written as case_id IN (the cases)
    # rather than a join: SQLite then collects the period's case ids from an index once and seeks each
    # call-back in the unique case_id index. Measured at 100,000 cases, the centre's 30 days (CPU time):
    # about 40 ms against 65 ms for the join; one CASE per row grouped beat six conditional counts
    # (each evaluates the CASE) and a covering (case_id, state, first_due_at, closed_at) index, which
    # the planner then scanned whole.
    stmt = select(bucket, func.count()).where(Callback.case_id.in_(select(Case.id).where(*conditions)))
    counts = {str(k): int(n) for k, n in session.execute(stmt.group_by(bucket))}
    return [(b, counts.get(b, 0)) for b in CALLBACK_BUCKETS]


def _medians(session: Session, conditions: Sequence[ColumnElement[bool]]) -> list[tuple[str, Median]]:
    # The milestone columns (cases.milestones) hold each case's first event of a step: the period's cases
    # are read from an index on (created_at or office_id, ..., milestones) alone, with no join to events.
    durations = [seconds_between(getattr(Case, MILESTONES[action]), Case.created_at) for _s, action in STEPS]
    if session.get_bind().dialect.name == "postgresql":
        return _medians_in_sql(session, conditions, durations)
    # SQLite has no percentile: the four durations of the period's cases come back in one pass over the
    # index and Python sorts each column. Measured at 100,000 cases, the centre's 30 days (CPU time): about
    # 45 ms, where sorting each step in SQL (a count and an ORDER BY ... OFFSET per step, eight
    # statements) took about 90 ms. The driver's rows are read a chunk at a time and dropped: 30,000
    # rows kept alive at once set off the garbage collector's full passes over the app's heap (about
    # 80 ms more at the median).
    columns: list[list[float | None]] = [[] for _ in STEPS]
    result = session.connection().execute(select(*durations).where(*conditions))
    try:
        while chunk := result.cursor.fetchmany(500):
            for column, values in zip(columns, zip(*chunk, strict=True), strict=True):
                column.extend(values)
    finally:
        result.close()
    medians = []
    for (step, _a), column in zip(STEPS, columns, strict=True):
        reached = sorted(v for v in column if v is not None)
        n = len(reached)
        # The middle one or two, averaged: the median as statistics.median takes it.
        middle = _tenths(statistics.fmean(reached[(n - 1) // 2 : n // 2 + 1])) if n else None
        medians.append((step, Median(middle, n)))
    return medians


def _medians_in_sql(
    session: Session, conditions: Sequence[ColumnElement[bool]], durations: list[seconds_between]
) -> list[tuple[str, Median]]:
    # percentile_cont(0.5) is the median as statistics.median takes it (the mean of the middle two).
    columns: list[ColumnElement[Any]] = [func.count(d) for d in durations]
    columns += [func.percentile_cont(0.5).within_group(d) for d in durations]
    row = session.execute(select(*columns).where(*conditions)).one()
    n = len(durations)
    return [
        (step, Median(None if middle is None else _tenths(float(middle)), int(count)))
        for (step, _a), count, middle in zip(STEPS, row[:n], row[n:], strict=True)
    ]


def _tenths(seconds: float) -> float:
    # Tenths of a second: julianday's float arithmetic leaves noise far below that.
    return round(seconds, 1)


def short_offices(session: Session, scope: Scope) -> list[ShortOffice]:
    """Offices of the scope with fewer than two active SC-Operators (heads count), central first."""
    operators = (
        select(RoleAssignment.office_id, func.count(distinct(RoleAssignment.user_id)).label("n"))
        .join(User, User.id == RoleAssignment.user_id)
        .where(RoleAssignment.role.in_([str(r) for r in OPERATOR_ROLES]), User.active)
        .group_by(RoleAssignment.office_id)
        .subquery()
    )
    n = func.coalesce(operators.c.n, 0)
    kind_order = case(
        (Office.kind == OfficeKind.CENTRAL, 0), (Office.kind == OfficeKind.PROVINCE, 1), else_=2
    )
    stmt = (
        select(Office.id, Office.code, Office.name_th, Office.name_en, n)
        .outerjoin(operators, operators.c.office_id == Office.id)
        .where(n < ENOUGH_OPERATORS)
        .order_by(kind_order, Office.code)
    )
    if scope.office_ids is not None:
        stmt = stmt.where(Office.id.in_(scope.office_ids))
    return [ShortOffice(i, c, th, en, int(k)) for i, c, th, en, k in session.execute(stmt)]


def figures(session: Session, scope: Scope, period: Period, now: datetime) -> Figures:
    """Every figure of the dashboard for the scope and period (`now` decides which call-backs are overdue)."""
    conditions = case_conditions(scope, period)
    total, hazards, states = _tally(session, conditions)
    by_province, by_office = _places(session, conditions)
    return Figures(
        period=period,
        scope=scope,
        total=total,
        by_hazard=list(hazards.items()),
        by_state=list(states.items()),
        by_province=by_province,
        by_office=by_office,
        callbacks=_callbacks(session, conditions, now),
        medians=_medians(session, conditions),
        short_offices=short_offices(session, scope),
    )


@dataclass(frozen=True)
class CaseRow:
    """One case of the case list export: codes and times, never the reporter's number or words."""

    reference: str
    created_at: datetime
    status: str
    category: str
    province_code: str | None
    office_code: str
    office_th: str
    office_en: str
    callback_state: str | None
    callback_due_at: datetime | None  # the first due time (the promise)
    callback_closed_at: datetime | None


def case_rows(session: Session, scope: Scope, period: Period, batch: int = 1000) -> Iterator[CaseRow]:
    """The cases of the scope and period, oldest first, read in batches."""
    stmt = (
        select(
            Case.reference,
            Case.created_at,
            Case.status,
            Case.category,
            Case.province_code,
            Office.code,
            Office.name_th,
            Office.name_en,
            Callback.state,
            Callback.first_due_at,
            Callback.closed_at,
        )
        .join(Office, Office.id == Case.office_id)
        .outerjoin(Callback, Callback.case_id == Case.id)
        .where(*case_conditions(scope, period))
        .order_by(Case.created_at, Case.id)
        .execution_options(yield_per=batch)
    )
    for row in session.execute(stmt):
        yield CaseRow(*row)
