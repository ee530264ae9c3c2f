"""cases.figures over 1,200 random cases agrees with the same figures counted case by case in Python.

The figures are counted in few statements (conditional counts, one GROUP BY of office and province, the
call-backs over case_id IN (...), SQLite's medians sorted in Python from rows read in chunks of 500): here
every count and median is checked against a plain count and statistics.median of every case, with
steps some cases never reached, an even and an odd number of durations, and more rows than one chunk.
"""

from __future__ import annotations

import random
import statistics
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from flask import Flask
from sqlalchemy import insert, select, update

from app import get_database
from cases import figures as fig
from cases.models import MILESTONES, Callback, CallbackState, Case, CaseStatus, HazardGroup, Office
from tests.support.seed import seed_bulk_cases

NOW = datetime(2026, 6, 15, 5, 0, tzinfo=UTC)
BANGKOK = ZoneInfo("Asia/Bangkok")
CASES = 1201  # more than two of the medians' 500-row chunks, and an odd number


def _seed(app: Flask) -> None:
    rng = random.Random(14)
    with get_database(app).session() as session:
        seed_bulk_cases(session, CASES, events_per_case=0, clock=lambda: NOW, rng=rng)
        cases = session.execute(select(Case.id, Case.office_id, Case.created_at)).all()
        moves, callbacks = [], []
        for case_id, office_id, created in cases:
            move: dict[str, object] = {"id": case_id}
            for column in MILESTONES.values():  # a step some cases never reached: NULL
                minutes = rng.randint(1, 5000) if rng.random() < 0.7 else None
                move[column] = None if minutes is None else created + timedelta(minutes=minutes)
            moves.append(move)
            if rng.random() < 0.6:
                due = created + timedelta(hours=24)
                state = rng.choice(list(CallbackState))
                closed = due + timedelta(hours=rng.randint(-20, 20)) if rng.random() < 0.7 else None
                callbacks.append(_callback(case_id, office_id, state, created, due, closed))
        session.execute(update(Case), moves)
        session.execute(insert(Callback), callbacks)
        session.commit()


def _callback(
    case_id: int, office_id: int, state: str, created: datetime, due: datetime, closed: datetime | None
) -> dict[str, object]:
    return {
        "case_id": case_id,
        "office_id": office_id,
        "state": state,
        "due_at": due,
        "first_due_at": due,
        "round": 1,
        "attempts": 0,
        "closed_at": closed,
        "created_at": created,
        "updated_at": created,
    }


def _bucket(state: str, due: datetime, closed: datetime | None) -> str:
    if state == CallbackState.REACHED:
        return "on_time" if closed is not None and closed <= due else "late"
    if state in {str(s) for s in fig.OPEN_CALLBACK_STATES}:
        return "overdue" if due < NOW else "waiting"
    return "gave_up" if state == CallbackState.GAVE_UP else "cancelled"


def test_every_figure_agrees_with_counting_each_case(app: Flask) -> None:
    _seed(app)
    period = fig.Period(date(2026, 3, 1), date(2026, 6, 15), BANGKOK)
    with get_database(app).session() as session:
        figures = fig.figures(session, fig.Scope(None), period, NOW)
        rows = (
            session.execute(select(Case).where(*fig.case_conditions(fig.Scope(None), period))).scalars().all()
        )
        calls = {c.case_id: c for c in session.scalars(select(Callback))}
        codes = {i: c for i, c in session.execute(select(Office.id, Office.code))}

    assert figures.total == len(rows) >= CASES  # the seeded console cases may add a few
    hazards = Counter(str(r.category) for r in rows)
    assert figures.by_hazard == [(str(h), hazards[str(h)]) for h in HazardGroup]
    states = Counter(str(r.status) for r in rows)
    assert figures.by_state == [(str(s), states[str(s)]) for s in CaseStatus]
    assert {r.code: r.count for r in figures.by_province} == Counter(r.province_code or "" for r in rows)
    assert {r.code: r.count for r in figures.by_office} == Counter(codes[r.office_id] for r in rows)
    buckets = Counter(
        _bucket(calls[r.id].state, calls[r.id].first_due_at, calls[r.id].closed_at)
        for r in rows
        if r.id in calls
    )
    assert figures.callbacks == [(b, buckets[b]) for b in fig.CALLBACK_BUCKETS]
    for (step, action), (name, median) in zip(fig.STEPS, figures.medians, strict=True):
        seconds = [
            (getattr(r, MILESTONES[action]) - r.created_at).total_seconds()
            for r in rows
            if getattr(r, MILESTONES[action]) is not None
        ]
        assert name == step and median.cases == len(seconds) > 500
        assert median.seconds == round(statistics.median(seconds), 1)
    assert {m.cases % 2 for _s, m in figures.medians} == {0, 1}  # both ways of taking the middle
