"""The case page's controls (issue 14, item 6): the district is chosen by name among the province's
districts (the form posts its code; a district of another province is refused), and the forwarding
targets come in groups: people, committees, offices below."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from flask import Flask
from sqlalchemy import select

from app import get_database
from cases.models import Case, CaseStatus, Office, OfficeKind
from cases.offices import load_offices
from infra.config import Config
from tests.integration.test_console import World, as_user, flashes, post, seeded_world, text


class Selects(HTMLParser):
    """Each <select>'s options by id: (optgroup label or "", value, text)."""

    def __init__(self) -> None:
        super().__init__()
        self.options: dict[str, list[tuple[str, str, str]]] = {}
        self._select: str | None = None
        self._group = ""
        self._value: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "select":
            self._select = a.get("id") or ""
            self.options[self._select] = []
        elif tag == "optgroup":
            self._group = a.get("label") or ""
        elif tag == "option" and self._select is not None:
            self._value = a.get("value") or ""
            self.options[self._select].append((self._group, self._value, ""))

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self._select = None
        elif tag == "optgroup":
            self._group = ""
        elif tag == "option":
            self._value = None

    def handle_data(self, data: str) -> None:
        if self._select is not None and self._value is not None:
            group, value, words = self.options[self._select][-1]
            self.options[self._select][-1] = (group, value, (words + data).strip())


def selects(page: str) -> dict[str, list[tuple[str, str, str]]]:
    parser = Selects()
    parser.feed(page)
    return parser.options


@pytest.fixture
def world(app: Flask, config: Config) -> World:
    """seed_console's world, then every office from geothai (the seed makes only four)."""
    seeded = seeded_world(app, config)
    with get_database(app).session() as session:
        load_offices(session)
        session.commit()
    return seeded


def _all_offices(app: Flask) -> dict[str, str]:
    """Chiang Mai's districts, code -> Thai name."""
    with get_database(app).session() as session:
        return {
            o.code: o.name_th
            for o in session.scalars(
                select(Office).where(Office.kind == OfficeKind.DISTRICT, Office.province_code == "50")
            )
        }


def _case(app: Flask, case_id: int) -> tuple[CaseStatus, str]:
    with get_database(app).session() as session:
        case = session.get(Case, case_id)
        assert case is not None
        office = session.get(Office, case.office_id) if case.office_id else None
        return CaseStatus(case.status), office.code if office else ""


def test_the_district_is_a_select_of_the_provinces_districts_by_name(app: Flask, world: World) -> None:
    chiang_mai = _all_offices(app)
    assert len(chiang_mai) > 20 and chiang_mai["5001"]
    case_id = world.cases["draft_50"]  # the caller named Chiang Mai
    agent = as_user(app, world, "agent")
    page = text(agent.get(f"/console/cases/{case_id}"))
    assert 'id="route-district" name="district"' in page and '<input id="route-district"' not in page
    options = selects(page)["route-district"]
    # First the province itself (no district), then every district of Chiang Mai by its name, code as value.
    assert options[0] == ("", "", "สำนักงาน กศน. จังหวัด (ไม่ระบุอำเภอ/เขต)")
    assert {value: words for _g, value, words in options[1:]} == chiang_mai
    assert all(re.fullmatch(r"50\d\d", value) for _g, value, _w in options[1:])
    names = [words for _g, _v, words in options[1:]]
    assert names == sorted(names)  # by name, not by code

    # The form posts the code of the chosen district: Mueang Chiang Mai (which has an SC-Operator).
    post(agent, f"/console/cases/{case_id}/route", province="50", district="5001", category="violence")
    assert _case(app, case_id) == (CaseStatus.ROUTED, "5001")


def test_a_district_of_another_province_is_refused(app: Flask, world: World) -> None:
    case_id = world.cases["draft_50"]
    agent = as_user(app, world, "agent")
    before = _case(app, case_id)
    assert before[0] == CaseStatus.DRAFT
    form = {"province": "50", "district": "1001", "category": "violence"}  # 1001: a Bangkok district
    refused = post(agent, f"/console/cases/{case_id}/route", **form)
    assert refused.status_code == 302
    assert _case(app, case_id) == before  # still a draft, not moved
    assert ("error", "กรุณาเลือกจังหวัด และหากระบุอำเภอ/เขต ต้องเป็นอำเภอ/เขตในจังหวัดนั้น") in flashes(agent)
    # No Bangkok district is offered on a Chiang Mai case.
    options = selects(text(agent.get(f"/console/cases/{case_id}")))["route-district"]
    assert "1001" not in {value for _g, value, _w in options}


def test_the_forwarding_targets_are_grouped_people_committees_offices_below(app: Flask, world: World) -> None:
    op = as_user(app, world, "op50")
    options = selects(text(op.get(f"/console/cases/{world.cases['routed_50']}")))["propose-target"]
    assert options[0] == ("", "", "เลือกบุคคล คณะทำงาน หรือ กศน.อำเภอ/เขต")
    groups: dict[str, list[str]] = {}
    for group, value, _words in options[1:]:
        groups.setdefault(group, []).append(value)
    assert list(groups) == ["เจ้าหน้าที่ SC-Action", "คณะทำงาน", "กศน.อำเภอ/เขต"]
    people, committees, offices = groups.values()
    assert all(v.startswith("user:") for v in people)
    assert f"user:{world.users['action50']}" in people and f"user:{world.users['op10']}" not in people
    assert committees == [f"committee:{world.committee}"]
    assert all(v.startswith("office:") for v in offices)
    with get_database(app).session() as session:
        below = session.scalars(
            select(Office.id).where(Office.parent_id == world.offices["50"]).order_by(Office.code)
        ).all()
    assert offices == [f"office:{i}" for i in below] and len(below) > 20  # Chiang Mai's districts
