"""A queue that shows urgency (issue 14, item 5): sorted by call-back due time (the default), hazard group
or age; overdue and due-soon rows marked by a word and an icon, not by colour alone; a summary preview.

Five cases at Chiang Mai (office 50) on Wednesday 25 November 2026, Bangkok time, with the shipped
callback settings (violence due in 60 working minutes, others in 240; "due soon" 30 minutes before):

    overdue   violence, 09:00, due 10:00       soon      violence, 10:00, due 11:00
    accident  accident, 09:00, due 13:00       health    health harm, 09:30, due 13:30
    anon      rights violation, 08:40, anonymous (no call back)

read at 10:45. The seeded cases of office 50 have no call backs; they come after these in the due order.
"""

# The callbacks tests' fixture is imported and used as the test argument of the same name.
# ruff: noqa: F811

from __future__ import annotations

import re

from sqlalchemy import update

from app import get_database
from cases.models import CallbackChoice, Case, HazardGroup
from cases.staff import User
from console import queries, queue_order
from console.base import console_clock
from tests.integration.test_callbacks import Hotline, bkk, hotline, signed_in  # noqa: F401
from tests.integration.test_console import text

NOW = bkk(25, 10, 45)
H = HazardGroup


def five_cases(hotline: Hotline) -> dict[str, int]:
    made = {
        "overdue": hotline.open_case(category=H.VIOLENCE, at=bkk(25, 9)),
        "soon": hotline.open_case(category=H.VIOLENCE, at=bkk(25, 10)),
        "accident": hotline.open_case(category=H.ACCIDENT, at=bkk(25, 9)),
        "health": hotline.open_case(category=H.HEALTH_HARM, at=bkk(25, 9, 30)),
        "anon": hotline.open_case(
            category=H.RIGHTS_VIOLATION, at=bkk(25, 8, 40), callback=CallbackChoice.NONE
        ),
    }
    for case_id in made.values():
        hotline.route(case_id, "50")
    with get_database(hotline.app).session() as s:
        # ("overdue" and "accident" were made the same minute: by age they sort by id.)
        s.execute(
            update(Case)
            .where(Case.id == made["overdue"])
            .values(summary="ครูตีนักเรียน\nในห้องเรียน   ต่อหน้าเพื่อน " + "ยาวมาก " * 40)
        )
    return made


def order(hotline: Hotline, made: dict[str, int], how: str) -> list[str]:
    """The names of the five cases in the order the queue shows them (other cases left out)."""
    names = {v: k for k, v in made.items()}
    with get_database(hotline.app).session() as s:
        op = s.get(User, hotline.users["op50"])
        assert op is not None
        f = queries.QueueFilter(order=how, state="all")
        page = queries.queue(s, op, f, now=NOW, per_page=200)
        return [names[c.id] for c in page.cases if c.id in names]


def test_the_queue_sorts_by_due_time_by_default_then_hazard_group_and_age(hotline: Hotline) -> None:
    made = five_cases(hotline)
    assert queries.QueueFilter.from_args({}).order == "due"
    assert order(hotline, made, "due") == ["overdue", "soon", "accident", "health", "anon"]
    # Within a hazard group the call back due soonest first; the guideline's order of the groups.
    assert order(hotline, made, "hazard") == ["overdue", "soon", "accident", "anon", "health"]
    assert order(hotline, made, "oldest") == ["anon", "overdue", "accident", "health", "soon"]
    assert order(hotline, made, "newest") == ["soon", "health", "accident", "overdue", "anon"]
    # The open call backs lead the due order, before every case nobody waits to be called back about.
    with get_database(hotline.app).session() as s:
        op = s.get(User, hotline.users["op50"])
        assert op is not None
        page = queries.queue(s, op, queries.QueueFilter(), now=NOW)
        assert [c.id for c in page.cases[:4]] == [made[k] for k in ("overdue", "soon", "accident", "health")]


def test_a_closed_call_back_no_longer_counts_in_the_due_order(hotline: Hotline) -> None:
    made = five_cases(hotline)
    from cases.callbacks import cancel_callback

    with get_database(hotline.app).session() as s:
        case, op = s.get(Case, made["overdue"]), s.get(User, hotline.users["op50"])
        assert case is not None and op is not None
        cancel_callback(s, case, op, "ผู้แจ้งโทรเข้ามาเอง", NOW)
    # No longer waiting for a call back: among the rest, by age (anon came in before it).
    assert order(hotline, made, "due") == ["soon", "accident", "health", "anon", "overdue"]


def test_overdue_and_due_soon_rows_stand_out_in_words_and_the_summary_shows_on_one_line(
    hotline: Hotline,
) -> None:
    made = five_cases(hotline)
    console_clock.install(hotline.app, lambda: NOW)
    page = text(signed_in(hotline, "op50").get("/console/"))
    rows = {
        int(m.group(2)): m.group(0)
        for m in re.finditer(r'<tr class="case-row([^"]*)">.*?/console/cases/(\d+)".*?</tr>', page, re.S)
    }
    overdue, soon, later, anon = (rows[made[k]] for k in ("overdue", "soon", "accident", "anon"))
    assert 'class="case-row urgent-overdue"' in overdue and "⚠" in overdue and "เลยกำหนด" in overdue
    assert 'class="case-row urgent-soon"' in soon and "⏰" in soon and "ใกล้ถึงกำหนด" in soon
    for quiet in (later, anon):
        assert "urgent-" not in quiet and "เลยกำหนด" not in quiet and "ใกล้ถึงกำหนด" not in quiet
    assert "ไม่ประสงค์ออกนาม" in anon  # anonymous: nothing is due
    preview = re.search(r'<span class="preview" title="([^"]*)">', overdue)
    assert preview is not None
    line = preview.group(1)
    assert line.startswith("ครูตีนักเรียน ในห้องเรียน ต่อหน้าเพื่อน ยาวมาก")  # one line, spaces folded
    assert len(line) == queue_order.PREVIEW_CHARS and line.endswith("…")
    assert "ยังไม่ได้สรุปเรื่อง" in soon  # no summary yet
    # The sort choice is offered, due time first.
    assert re.search(r'<select id="f-order" name="order">\s*<option value="due">กำหนดโทรกลับ', page)


def test_urgency_and_preview_rules() -> None:
    assert queue_order.preview(None) == "" and queue_order.preview("  a\n b ") == "a b"
    assert queue_order.urgency(None, NOW) == ""
