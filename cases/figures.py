"""The dashboard's figures for a scope of offices and a period: counts, call-back timeliness, medians.

Every count is one GROUP BY in the database; the medians read the cases' milestone columns (cases.milestones)
from an index: PostgreSQL takes them with percentile_cont, SQLite sorts each step's durations and hands
back only the middle one or two. A period is a
range of whole days in the service's time zone; a case belongs to it by when it was opened (the call).
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


def _grouped(session: Session, column: Any, conditions: Sequence[ColumnElement[bool]]) -> dict[Any, int]:
    stmt = select(column, func.count()).where(*conditions).group_by(column)
    return {key: int(n) for key, n in session.execute(stmt)}


def _named(counts: dict[Any, int], names: dict[Any, tuple[str, str, str]]) -> list[Named]:
    rows = [Named(*names.get(key, (str(key or ""), "", "")), n) for key, n in counts.items()]
    return sorted(rows, key=lambda r: (-r.count, r.code))


def _by_province(session: Session, conditions: Sequence[ColumnElement[bool]]) -> list[Named]:
    counts = _grouped(session, Case.province_code, conditions)
    codes = [c for c in counts if c]
    stmt = select(Office.code, Office.code, Office.name_th, Office.name_en).where(
        Office.kind == OfficeKind.PROVINCE, Office.code.in_(codes)
    )
    names = {row[0]: tuple(row[1:]) for row in session.execute(stmt)}
    return _named({k or "": v for k, v in counts.items()}, names)  # type: ignore[arg-type]


def _by_office(session: Session, conditions: Sequence[ColumnElement[bool]]) -> list[Named]:
    counts = _grouped(session, Case.office_id, conditions)
    stmt = select(Office.id, Office.code, Office.name_th, Office.name_en).where(Office.id.in_(list(counts)))
    names = {row[0]: tuple(row[1:]) for row in session.execute(stmt)}
    return _named(counts, names)  # type: ignore[arg-type]


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
    stmt = (
        select(bucket, func.count())
        .select_from(Callback)
        .join(Case, Case.id == Callback.case_id)
        .where(*conditions)
    )
    counts = {str(k): int(n) for k, n in session.execute(stmt.group_by(bucket))}
    return [(b, counts.get(b, 0)) for b in CALLBACK_BUCKETS]


def _medians(session: Session, conditions: Sequence[ColumnElement[bool]]) -> list[tuple[str, Median]]:
    # The milestone columns (cases.milestones) hold each case's first event of a step: the period's cases
    # are read from an index on (created_at or office_id, ..., milestones) alone, with no join to events.
    durations = [seconds_between(getattr(Case, MILESTONES[action]), Case.created_at) for _s, action in STEPS]
    if session.get_bind().dialect.name == "postgresql":
        return _medians_in_sql(session, conditions, durations)
    counts = session.execute(select(*(func.count(d) for d in durations)).where(*conditions)).one()
    medians = []
    for (step, _a), duration, n in zip(STEPS, durations, counts, strict=True):
        middle = None
        if n:
            # The middle one or two of the sorted durations: SQLite sorts them (keeping only the first
            # half) without handing every value to Python. Measured at 100,000 cases, 30 days: about
            # 100 ms for the four steps, where fetching the four durations of every case and taking the
            # median in Python took 180 ms (the old join to the events: about 400 ms).
            stmt = (
                select(duration)
                .where(*conditions, duration.is_not(None))
                .order_by(duration)
                .offset((n - 1) // 2)
                .limit(2 - n % 2)
            )
            middle = _tenths(statistics.fmean(float(v) for v in session.scalars(stmt)))
        medians.append((step, Median(middle, int(n))))
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
    hazards = _grouped(session, Case.category, conditions)
    states = _grouped(session, Case.status, conditions)
    return Figures(
        period=period,
        scope=scope,
        total=sum(states.values()),
        by_hazard=[(str(h), hazards.get(str(h), 0)) for h in HazardGroup],
        by_state=[(str(s), states.get(str(s), 0)) for s in CaseStatus],
        by_province=_by_province(session, conditions),
        by_office=_by_office(session, conditions),
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
