"""cases.figures as it counted before the one-pass rewrite (13 statements): for side-by-side timing only.

bench/console.py times the dashboard and figures() with ``figures_as_before()`` swapped in, on the same data
in the same run, to show what the rewrite saves. The code is the old one, kept verbatim but for names.
"""

from __future__ import annotations

import contextlib
import statistics
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.orm import Session

from cases import figures as fig
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


def _grouped(session: Session, column: Any, conditions: Sequence[ColumnElement[bool]]) -> dict[Any, int]:
    stmt = select(column, func.count()).where(*conditions).group_by(column)
    return {key: int(n) for key, n in session.execute(stmt)}


def _by_province(session: Session, conditions: Sequence[ColumnElement[bool]]) -> list[fig.Named]:
    counts = _grouped(session, Case.province_code, conditions)
    codes = [c for c in counts if c]
    stmt = select(Office.code, Office.code, Office.name_th, Office.name_en).where(
        Office.kind == OfficeKind.PROVINCE, Office.code.in_(codes)
    )
    names = {row[0]: tuple(row[1:]) for row in session.execute(stmt)}
    return fig._named({k or "": v for k, v in counts.items()}, names)  # type: ignore[arg-type]


def _by_office(session: Session, conditions: Sequence[ColumnElement[bool]]) -> list[fig.Named]:
    counts = _grouped(session, Case.office_id, conditions)
    stmt = select(Office.id, Office.code, Office.name_th, Office.name_en).where(Office.id.in_(list(counts)))
    names = {row[0]: tuple(row[1:]) for row in session.execute(stmt)}
    return fig._named(counts, names)  # type: ignore[arg-type]


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
    return [(b, counts.get(b, 0)) for b in fig.CALLBACK_BUCKETS]


def _medians(session: Session, conditions: Sequence[ColumnElement[bool]]) -> list[tuple[str, fig.Median]]:
    durations = [fig.seconds_between(getattr(Case, MILESTONES[a]), Case.created_at) for _s, a in fig.STEPS]
    if session.get_bind().dialect.name == "postgresql":
        return fig._medians_in_sql(session, conditions, durations)
    counts = session.execute(select(*(func.count(d) for d in durations)).where(*conditions)).one()
    medians = []
    for (step, _a), duration, n in zip(fig.STEPS, durations, counts, strict=True):
        middle = None
        if n:
            stmt = (
                select(duration)
                .where(*conditions, duration.is_not(None))
                .order_by(duration)
                .offset((n - 1) // 2)
                .limit(2 - n % 2)
            )
            middle = fig._tenths(statistics.fmean(float(v) for v in session.scalars(stmt)))
        medians.append((step, fig.Median(middle, int(n))))
    return medians


def figures(session: Session, scope: fig.Scope, period: fig.Period, now: datetime) -> fig.Figures:
    conditions = fig.case_conditions(scope, period)
    hazards = _grouped(session, Case.category, conditions)
    states = _grouped(session, Case.status, conditions)
    return fig.Figures(
        period=period,
        scope=scope,
        total=sum(states.values()),
        by_hazard=[(str(h), hazards.get(str(h), 0)) for h in HazardGroup],
        by_state=[(str(s), states.get(str(s), 0)) for s in CaseStatus],
        by_province=_by_province(session, conditions),
        by_office=_by_office(session, conditions),
        callbacks=_callbacks(session, conditions, now),
        medians=_medians(session, conditions),
        short_offices=fig.short_offices(session, scope),
    )


@contextlib.contextmanager
def figures_as_before() -> Iterator[None]:
    """cases.figures.figures counting the old way (the dashboard page calls it through the module)."""
    new = fig.figures
    fig.figures = figures
    try:
        yield
    finally:
        fig.figures = new
