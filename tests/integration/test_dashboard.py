"""The dashboard page, its exports and a case's print view over HTTP: scoped, audited, Thai, no numbers."""

from __future__ import annotations

import csv
import io
import re
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from openpyxl import load_workbook
from sqlalchemy import select, update

from app import get_database
from cases.models import Case
from cases.staff import AuditEvent
from console import dashboard
from console.base import console_clock
from infra.config import Config
from infra.crypto import FieldCipher
from tests.integration.test_console_thai import english_words, visible_text
from tests.support.figures_world import MASKED, NOW, NUMBER, PASSWORD, FiguresWorld, seed_figures_world

JUNE = {"from": "2026-06-01", "to": "2026-06-15"}
SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture
def world(app: Flask, config: Config) -> FiguresWorld:
    console_clock.install(app, lambda: NOW)
    with get_database(app).session() as session:
        w = seed_figures_world(session, FieldCipher(config.data_key))
        session.commit()
        return w


def signed_in(app: Flask, user: str) -> FlaskClient:
    client = app.test_client()
    page = client.get("/console/login").get_data(as_text=True)
    token = re.search(r'name="csrf-token" content="([^"]+)"', page)
    assert token
    form = {"username": f"fig_{user}", "password": PASSWORD, "csrf_token": token.group(1)}
    assert client.post("/console/login", data=form).status_code == 302
    return client


def _svgs(html: str) -> list[ET.Element]:
    return [ET.fromstring(s) for s in re.findall(r"<svg .*?</svg>", html, flags=re.S)]  # noqa: S314 - our page


def _audits(app: Flask, action: str) -> list[AuditEvent]:
    with get_database(app).session() as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action)))


def _no_number(data: str) -> None:
    assert NUMBER[-4:] not in data and MASKED not in data and "+66" not in data


def test_the_page_charts_and_tables_for_the_centre(app: Flask, world: FiguresWorld) -> None:
    response = signed_in(app, "agent").get("/console/dashboard", query_string=JUNE)
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "1 มิ.ย. 2569" in html and "15 มิ.ย. 2569" in html  # the period in Buddhist Era dates
    assert "6 เรื่อง" in html
    charts = _svgs(html)
    assert len(charts) == 6  # group, state, province, office, call-backs, medians
    for chart in charts:  # well-formed, with a title that names it for screen readers
        title = chart.find(f"{SVG}title")
        assert title is not None and title.text and chart.get("role") == "img"
        assert chart.get("aria-labelledby") == title.get("id")
    hazard = charts[0]
    texts = [t.text for t in hazard.iter(f"{SVG}text")]
    assert texts[:2] == ["ความรุนแรง", "3"]  # the label, then its number beside the bar
    assert '<td class="num">3</td>' in html  # and the same number in the table
    # The strict CSP allows neither inline styles nor inline scripts (the console's own files only).
    assert "style=" not in html and re.findall(r"<script(?![^>]*\bsrc=)", html) == []
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    assert english_words(visible_text(html)) == []


def test_the_page_counts_again_once_its_figures_are_a_minute_old(
    app: Flask, world: FiguresWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, started = signed_in(app, "agent"), time.monotonic()
    monkeypatch.setattr(dashboard, "monotonic", lambda: started)
    assert "6 เรื่อง" in client.get("/console/dashboard", query_string=JUNE).get_data(as_text=True)
    with get_database(app).session() as session:  # case G (31 May) moves into the period
        session.execute(update(Case).where(Case.id == world.cases["G"]).values(created_at=NOW))
        session.commit()

    monkeypatch.setattr(dashboard, "monotonic", lambda: started + dashboard.CACHE_SECONDS - 1)
    assert "6 เรื่อง" in client.get("/console/dashboard", query_string=JUNE).get_data(as_text=True)
    exported = _csv_rows(client.get("/console/dashboard/figures.csv", query_string=JUNE).data)
    assert ["ความรุนแรง", "4"] in exported  # the export counts afresh: G is the fourth case of violence
    monkeypatch.setattr(dashboard, "monotonic", lambda: started + dashboard.CACHE_SECONDS + 1)
    assert "7 เรื่อง" in client.get("/console/dashboard", query_string=JUNE).get_data(as_text=True)


def test_an_office_user_sees_only_their_offices(app: Flask, world: FiguresWorld) -> None:
    bangkok = signed_in(app, "op10")
    html = bangkok.get("/console/dashboard", query_string=JUNE).get_data(as_text=True)
    assert "1 เรื่อง" in html and "เชียงใหม่" not in html
    assert bangkok.get("/console/dashboard", query_string={"office": world.offices["50"]}).status_code == 404
    chiang_mai = signed_in(app, "op50").get("/console/dashboard", query_string=JUNE).get_data(as_text=True)
    assert "4 เรื่อง" in chiang_mai and "กรุงเทพ" not in chiang_mai.split("<main", 1)[1]


def _csv_rows(data: bytes) -> list[list[str]]:
    assert data.startswith(b"\xef\xbb\xbf")  # the BOM: Excel reads the file as UTF-8
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))


def test_figure_exports_hold_the_page_figures_and_are_audited(app: Flask, world: FiguresWorld) -> None:
    client = signed_in(app, "op50")
    args = {**JUNE, "office": world.offices["50"]}
    got = client.get("/console/dashboard/figures.csv", query_string=args)
    assert got.status_code == 200 and got.mimetype == "text/csv"
    assert "attachment" in got.headers["Content-Disposition"]
    rows = _csv_rows(got.data)
    assert rows[0] == ["กลุ่มภัย"] and rows[1] == ["กลุ่มภัย", "จำนวนเรื่อง"] and rows[2] == ["ความรุนแรง", "2"]
    assert ["โทรกลับทันเวลา", "1"] in rows and ["จากสายแจ้งถึงส่งเรื่องให้สำนักงาน", "0.33", "3"] in rows
    book = load_workbook(io.BytesIO(client.get("/console/dashboard/figures.xlsx", query_string=args).data))
    assert book.sheetnames[0] == "กลุ่มภัย"
    assert [list(r) for r in book["กลุ่มภัย"].iter_rows(values_only=True)][1] == ["ความรุนแรง", 2]
    exported = _audits(app, "dashboard_exported")
    assert [(a.user_id, a.detail["what"], a.detail["of"], a.detail["office"]) for a in exported] == [
        (world.users["op50"], "figures", "csv", "50"),
        (world.users["op50"], "figures", "xlsx", "50"),
    ]


def test_the_case_list_export_is_scoped_and_holds_no_number(app: Flask, world: FiguresWorld) -> None:
    client = signed_in(app, "op50")
    got = client.get("/console/dashboard/cases.csv", query_string=JUNE)
    rows = _csv_rows(got.data)
    refs = {world.references[k] for k in ("A", "B", "C", "H")}
    assert {r[0].replace("-", "") for r in rows[1:]} == refs  # not D (Bangkok), E (draft), G/F (outside)
    first = next(r for r in rows if r[0].replace("-", "") == world.references["A"])
    assert first[1] == "10 มิ.ย. 2569 10:00" and first[3] == "ความรุนแรง" and "เชียงใหม่" in first[4]
    _no_number(got.get_data(as_text=True))
    xlsx = client.get("/console/dashboard/cases.xlsx", query_string=JUNE)
    sheet = load_workbook(io.BytesIO(xlsx.data)).active
    assert sheet is not None
    cells = [str(c) for row in sheet.iter_rows(values_only=True) for c in row if c is not None]
    _no_number(" ".join(cells))
    assert len(list(sheet.iter_rows())) == 5
    assert [a.detail["what"] for a in _audits(app, "dashboard_exported")] == ["cases", "cases"]


def test_the_print_view_has_no_number_no_navigation_and_is_audited(app: Flask, world: FiguresWorld) -> None:
    client = signed_in(app, "op50")
    case_id = world.cases["B"]
    html = client.get(f"/console/cases/{case_id}/print").get_data(as_text=True)
    assert world.references["B"][:4] in html and "print.css" in html
    assert "<nav" not in html and "<form" not in html
    _no_number(html)
    assert english_words(visible_text(html)) == []
    assert [a.case_id for a in _audits(app, "case_printed")] == [case_id]
    assert f"/console/cases/{case_id}/print" in client.get(f"/console/cases/{case_id}").get_data(as_text=True)
    # Another province's case: 404 and the refusal on record, as for the case page.
    assert signed_in(app, "op10").get(f"/console/cases/{case_id}/print").status_code == 404


def _soffice(tmp_path: Path, source: Path, target: str, *infilter: str) -> Path:
    """Convert with LibreOffice (headless, its own profile so parallel tests do not share one)."""
    profile = (tmp_path / "lo-profile").as_uri()
    out = tmp_path / "converted"
    command = ["soffice", f"-env:UserInstallation={profile}", "--headless", *infilter]
    command += ["--convert-to", target, "--outdir", str(out), str(source)]
    subprocess.run(command, check=True, capture_output=True, timeout=180)
    return out / f"{source.stem}.{target.split(':', 1)[0]}"


@pytest.mark.slow
@pytest.mark.sqlite_only  # LibreOffice reads the files; the database behind them makes no difference
def test_libreoffice_opens_the_exports_with_thai_intact(
    app: Flask, world: FiguresWorld, tmp_path: Path
) -> None:
    client = signed_in(app, "agent")
    xlsx = tmp_path / "figures.xlsx"
    xlsx.write_bytes(client.get("/console/dashboard/figures.xlsx", query_string=JUNE).data)
    # UTF-8 out (76): LibreOffice's default CSV character set is not UTF-8 and writes Thai as "?".
    as_csv = _soffice(tmp_path, xlsx, "csv:Text - txt - csv (StarCalc):44,34,76,1")
    first_sheet = list(csv.reader(io.StringIO(as_csv.read_text(encoding="utf-8"))))
    assert first_sheet[:2] == [["กลุ่มภัย", "จำนวนเรื่อง"], ["ความรุนแรง", "3"]]
    cases_csv = tmp_path / "cases.csv"
    cases_csv.write_bytes(client.get("/console/dashboard/cases.csv", query_string=JUNE).data)
    # Read as UTF-8 (76), as a person picks it in LibreOffice's import dialog; the BOM is not kept.
    as_xlsx = _soffice(tmp_path, cases_csv, "xlsx", "--infilter=CSV:44,34,76,1")
    sheet = load_workbook(as_xlsx).active
    assert sheet is not None
    rows = [list(r) for r in sheet.iter_rows(values_only=True)]
    assert rows[0][:4] == ["เลขที่เรื่อง", "รับแจ้งเมื่อ", "สถานะ", "กลุ่มภัย"]
    assert len(rows) == 7 and "10 มิ.ย. 2569 10:00" in [r[1] for r in rows]


def test_the_office_chart_shows_the_top_offices_and_sums_the_rest(app: Flask) -> None:
    rows = [[f"office {i}", 100 - i] for i in range(25)]
    with app.test_request_context("/console/dashboard"):
        shown = dashboard._top(rows)
    assert len(shown) == dashboard.OFFICES_SHOWN
    assert shown[:19] == rows[:19]
    assert shown[-1] == ["สำนักงานอื่น (6 แห่ง)", sum(100 - i for i in range(19, 25))]


def test_the_page_and_the_case_list_in_english(app: Flask, world: FiguresWorld) -> None:
    client = signed_in(app, "op50")
    page = client.get("/console/dashboard").get_data(as_text=True)
    token = re.search(r'name="csrf-token" content="([^"]+)"', page)
    assert token
    client.post("/console/locale", data={"locale": "en", "next": "/console/", "csrf_token": token.group(1)})
    html = client.get("/console/dashboard", query_string=JUNE).get_data(as_text=True)
    assert "Cases opened from 1 Jun 2026 to 15 Jun 2026: 4" in html and "Violence" in html
    rows = _csv_rows(client.get("/console/dashboard/cases.csv", query_string=JUNE).data)
    assert rows[0][:3] == ["Reference", "Opened", "State"]
    assert "10 Jun 2026 10:00" in [r[1] for r in rows]
