"""The dashboard's figures on a world whose every number is known (tests/support/figures_world.py)."""

from __future__ import annotations

from datetime import date
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from sqlalchemy.orm import Session

from app import get_database
from cases import figures as fig
from cases.figures import Median, Period, Scope
from cases.staff import User
from infra.config import Config
from infra.crypto import FieldCipher
from tests.support.figures_world import NOW, FiguresWorld, seed_figures_world

BANGKOK = ZoneInfo("Asia/Bangkok")
JUNE = Period(date(2026, 6, 1), date(2026, 6, 15), BANGKOK)


@pytest.fixture
def world(app: Flask, config: Config) -> FiguresWorld:
    with get_database(app).session() as session:
        w = seed_figures_world(session, FieldCipher(config.data_key))
        session.commit()
        return w


def _for(session: Session, world: FiguresWorld, user: str, office: str | None = None) -> fig.Figures:
    who = session.get(User, world.users[user])
    assert who is not None
    scope = fig.scope_for(session, who, world.offices[office] if office else None)
    assert scope is not None
    return fig.figures(session, scope, JUNE, NOW)


def _nonzero(pairs: list[tuple[str, int]]) -> dict[str, int]:
    return {k: n for k, n in pairs if n}


def test_the_centre_counts_every_case_of_the_period_drafts_too(app: Flask, world: FiguresWorld) -> None:
    with get_database(app).session() as session:
        f = _for(session, world, "agent")
    assert f.scope == Scope(None)
    assert f.total == 6  # G (23:30 on 31 May in Bangkok) and F (May) are outside; H (00:10) is in
    assert _nonzero(f.by_hazard) == {"violence": 3, "accident": 1, "rights_violation": 1, "health_harm": 1}
    assert [k for k, _n in f.by_hazard] == [
        "violence",
        "accident",
        "rights_violation",
        "health_harm",
        "unspecified",
    ]
    assert _nonzero(f.by_state) == {"draft": 1, "routed": 2, "assigned": 1, "in_action": 1, "resolved": 1}
    assert [(r.code, r.count) for r in f.by_province] == [("50", 5), ("10", 1)]
    assert f.by_province[0].name_th == "สำนักงาน กศน. จังหวัดเชียงใหม่"
    assert [(r.code, r.count) for r in f.by_office] == [("50", 4), ("10", 1), ("5001", 1)]
    assert f.callbacks == [
        ("on_time", 1),
        ("late", 1),
        ("overdue", 1),
        ("waiting", 2),
        ("gave_up", 1),
        ("cancelled", 0),
    ]
    assert f.medians == [
        ("routing", Median(1500, 4)),
        ("approval", Median(7200, 3)),
        ("first_action", Median(9000, 2)),  # B's second action (9000 s) is not its first
        ("resolution", Median(18000, 1)),
    ]


def test_a_province_sees_itself_and_its_districts_and_no_drafts(app: Flask, world: FiguresWorld) -> None:
    with get_database(app).session() as session:
        f = _for(session, world, "op50")
    assert f.total == 4  # A, B, H at Chiang Mai, C at its district; not E (a draft) nor D (Bangkok)
    assert _nonzero(f.by_hazard) == {"violence": 2, "accident": 1, "rights_violation": 1}
    assert [(r.code, r.count) for r in f.by_province] == [("50", 4)]
    assert [(r.code, r.count) for r in f.by_office] == [("50", 3), ("5001", 1)]
    assert _nonzero(f.callbacks) == {"on_time": 1, "late": 1, "overdue": 1, "gave_up": 1}
    assert f.medians == [
        ("routing", Median(1200, 3)),
        ("approval", Median(5400, 2)),
        ("first_action", Median(9000, 2)),
        ("resolution", Median(18000, 1)),
    ]


def test_another_province_and_a_district_see_only_their_own(app: Flask, world: FiguresWorld) -> None:
    with get_database(app).session() as session:
        bangkok = _for(session, world, "op10")
        district = _for(session, world, "op5001")
        central = session.get(User, world.users["agent"])
        assert central is not None
        just_bangkok = fig.figures(
            session, fig.scope_for(session, central, world.offices["10"]) or Scope(None), JUNE, NOW
        )
        refused = fig.scope_for(session, session.get(User, world.users["op10"]), world.offices["50"])  # type: ignore[arg-type]
    assert bangkok.total == 1 and [(r.code, r.count) for r in bangkok.by_province] == [("10", 1)]
    assert bangkok.medians[0] == ("routing", Median(2400, 1))
    assert bangkok.medians[2] == ("first_action", Median(None, 0))
    assert district.total == 1 and [(r.code, r.count) for r in district.by_office] == [("5001", 1)]
    assert just_bangkok.total == bangkok.total == 1
    assert refused is None  # Bangkok's staff cannot ask for Chiang Mai's figures


def test_offices_short_of_sc_operators(app: Flask, world: FiguresWorld) -> None:
    with get_database(app).session() as session:
        centre = {r.code: r.operators for r in _for(session, world, "agent").short_offices}
        chiang_mai = {r.code: r.operators for r in _for(session, world, "op50").short_offices}
    assert centre["central"] == 0 and centre["10"] == 1  # op10b is inactive: Bangkok has one
    assert "50" not in centre  # an operator and a head
    assert next(iter(centre)) == "central"  # the centre first, then provinces, then districts
    assert chiang_mai["5001"] == 1 and "50" not in chiang_mai and "10" not in chiang_mai
    assert all(code.startswith("50") and len(code) == 4 for code in chiang_mai)


def test_the_period_from_a_form() -> None:
    now = NOW
    assert Period.chosen(None, None, now, BANGKOK) == Period(date(2026, 5, 17), date(2026, 6, 15), BANGKOK)
    assert Period.chosen("2026-06-15", "2026-06-01", now, BANGKOK) == JUNE  # swapped back
    assert Period.chosen("junk", "2026-06-15", now, BANGKOK).first == date(2026, 5, 17)
    start, end = JUNE.bounds()
    assert start.isoformat() == "2026-06-01T00:00:00+07:00" and end.isoformat() == "2026-06-16T00:00:00+07:00"
