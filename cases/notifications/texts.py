"""The messages' texts, Thai first: one template per kind, rendered once per reader's language.

Texts carry the case reference, the due time and a console link; never the reporter's number or words.
Whatever a caller passes, phone-number-like runs are masked before a text is stored.
"""

from __future__ import annotations

import hashlib
import logging
import string
from collections.abc import Mapping
from datetime import datetime
from zoneinfo import ZoneInfo

from cases.models import (
    Office,
)
from cases.reference import display_reference, is_valid_reference
from cases.thai_dates import format_datetime
from infra.clock import as_utc
from infra.logs import mask_phones

log = logging.getLogger(__name__)

DEDUPE_KEY_MAX = 120  # Notification.dedupe_key
SUBJECT_MAX = 200

# Thai first. Placeholders: {reference} (shown as 1234-5678), {due} (the due time in the reader's language,
# from params["due_at"] (ISO 8601) or params["due_local"]), {office} (the office's name in the reader's
# language), {attempts}, {max_attempts}. A missing value shows as "-". The link is not part of the body:
# e-mail and LINE add it below, SMS after the subject, the console as a button.
TEMPLATES: dict[str, dict[str, tuple[str, str]]] = {
    "before_due": {
        "th": (
            "ใกล้ถึงกำหนดโทรกลับ: เรื่อง {reference}",
            "เรื่อง {reference} ต้องโทรกลับผู้แจ้งภายใน {due}\nกรุณาโทรกลับผู้แจ้งและบันทึกผลการโทรในระบบ",
        ),
        "en": (
            "Call-back due soon: case {reference}",
            "Case {reference} must be called back by {due}.\n"
            "Please call the reporter back and log the outcome in the console.",
        ),
    },
    "at_due": {
        "th": (
            "ถึงกำหนดโทรกลับแล้ว: เรื่อง {reference}",
            "เรื่อง {reference} ถึงกำหนดโทรกลับผู้แจ้งแล้ว ({due})\nกรุณาโทรกลับผู้แจ้งโดยเร็วและบันทึกผลการโทรในระบบ",
        ),
        "en": (
            "Call-back due now: case {reference}",
            "Case {reference} was due to be called back at {due}.\n"
            "Please call the reporter back now and log the outcome in the console.",
        ),
    },
    "escalate_head": {
        "th": (
            "เลยกำหนดโทรกลับ: เรื่อง {reference}",
            "เรื่อง {reference} ของ{office} ยังไม่ได้โทรกลับผู้แจ้ง ซึ่งครบกำหนดเมื่อ {due}\n"
            "ในฐานะหัวหน้า SC-Operator กรุณาดูแลให้มีการโทรกลับผู้แจ้ง",
        ),
        "en": (
            "Call-back overdue: case {reference}",
            "Case {reference} at {office} has not been called back; it was due at {due}.\n"
            "As head SC-Operator, please see that the reporter is called back.",
        ),
    },
    "escalate_parent": {
        "th": (
            "เลยกำหนดโทรกลับ (แจ้งสำนักงานต้นสังกัด): เรื่อง {reference}",
            "เรื่อง {reference} ของ{office} ยังไม่ได้โทรกลับผู้แจ้ง ซึ่งครบกำหนดเมื่อ {due} "
            "และได้แจ้งหัวหน้า SC-Operator ของสำนักงานนั้นแล้ว\n"
            "กรุณาติดตามให้มีการโทรกลับผู้แจ้ง",
        ),
        "en": (
            "Call-back overdue, escalated to your office: case {reference}",
            "Case {reference} at {office} has still not been called back; it was due at {due}, "
            "and that office's head SC-Operator was alerted.\n"
            "Please follow up so that the reporter is called back.",
        ),
    },
    "no_recipient": {
        "th": (
            "ไม่มีผู้รับแจ้งเตือนโทรกลับ: เรื่อง {reference}",
            "เรื่อง {reference} ของ{office} ต้องโทรกลับผู้แจ้งภายใน {due} "
            "แต่สำนักงานนั้นไม่มี SC-Operator ที่จะรับการแจ้งเตือน\n"
            "กรุณาดูแลให้มีการโทรกลับผู้แจ้ง และให้สำนักงานนั้นมี SC-Operator",
        ),
        "en": (
            "Nobody to remind about a call-back: case {reference}",
            "Case {reference} at {office} must be called back by {due}, "
            "but that office has no SC-Operator to remind.\n"
            "Please see that the reporter is called back, and that the office has an SC-Operator.",
        ),
    },
    "callback_retry": {
        "th": (
            "โทรกลับไม่สำเร็จ ต้องโทรอีกครั้ง: เรื่อง {reference}",
            "การโทรกลับผู้แจ้งเรื่อง {reference} ครั้งที่ {attempts} จาก {max_attempts} ครั้งไม่สำเร็จ\n"
            "กำหนดโทรกลับครั้งต่อไปภายใน {due}",
        ),
        "en": (
            "Call-back failed, try again: case {reference}",
            "Attempt {attempts} of {max_attempts} to call back the reporter of case {reference} failed.\n"
            "The next call back is due by {due}.",
        ),
    },
    "callback_gave_up": {
        "th": (
            "ยุติการโทรกลับ: เรื่อง {reference}",
            "โทรกลับผู้แจ้งเรื่อง {reference} ไม่สำเร็จครบ {max_attempts} ครั้งแล้ว "
            "ระบบจึงหยุดแจ้งเตือนการโทรกลับ\n"
            "กรุณาพิจารณาการดำเนินการต่อในระบบ",
        ),
        "en": (
            "Call-back given up: case {reference}",
            "The reporter of case {reference} could not be reached in {max_attempts} attempts; "
            "call-back reminders have stopped.\n"
            "Please decide in the console how to go on.",
        ),
    },
    "follow_up_message": {
        "th": (
            "ผู้แจ้งฝากข้อความเพิ่มเติม: เรื่อง {reference}",
            "ผู้แจ้งเรื่อง {reference} โทรมาฝากข้อความเพิ่มเติม\nฟังข้อความได้ในระบบ",
        ),
        "en": (
            "New follow-up message: case {reference}",
            "The reporter of case {reference} called again and left a further message.\n"
            "Listen to it in the console.",
        ),
    },
    # Workflow alerts (cases.notifications.alerts): the reference and, where it helps, the office only.
    "case_routed": {
        "th": (
            "มีเรื่องใหม่ส่งถึงสำนักงาน: เรื่อง {reference}",
            "เรื่อง {reference} ได้ส่งถึง{office}แล้ว\nกรุณาสรุปเหตุการณ์และเสนอส่งต่อในระบบ",
        ),
        "en": (
            "New case for your office: case {reference}",
            "Case {reference} has been sent to {office}.\n"
            "Please summarise it and propose where to forward it in the console.",
        ),
    },
    "proposal_waiting": {
        "th": (
            "มีข้อเสนอส่งต่อรอท่านอนุมัติ: เรื่อง {reference}",
            "มีข้อเสนอส่งต่อเรื่อง {reference} รอหัวหน้า SC-Operator อนุมัติหรือไม่อนุมัติ\nกรุณาพิจารณาในระบบ",
        ),
        "en": (
            "A forwarding proposal awaits you: case {reference}",
            "A proposal to forward case {reference} awaits a head SC-Operator's decision.\n"
            "Please decide in the console.",
        ),
    },
    "proposal_approved": {
        "th": (
            "ข้อเสนอส่งต่อของท่านได้รับอนุมัติ: เรื่อง {reference}",
            "ข้อเสนอส่งต่อเรื่อง {reference} ของท่านได้รับอนุมัติแล้ว",
        ),
        "en": (
            "Your forwarding proposal was approved: case {reference}",
            "Your proposal to forward case {reference} was approved.",
        ),
    },
    "proposal_rejected": {
        "th": (
            "ข้อเสนอส่งต่อของท่านไม่ได้รับอนุมัติ: เรื่อง {reference}",
            "ข้อเสนอส่งต่อเรื่อง {reference} ของท่านไม่ได้รับอนุมัติ\nดูเหตุผลและเสนอใหม่ได้ในระบบ",
        ),
        "en": (
            "Your forwarding proposal was rejected: case {reference}",
            "Your proposal to forward case {reference} was rejected.\n"
            "See the reason and propose again in the console.",
        ),
    },
    "case_assigned": {
        "th": (
            "ท่านได้รับมอบหมายเรื่อง {reference}",
            "ท่านได้รับมอบหมายให้ดำเนินการเรื่อง {reference}\nกรุณารับทราบและดำเนินการในระบบ",
        ),
        "en": (
            "You were assigned case {reference}",
            "You were assigned case {reference} to act on.\nPlease acknowledge it and act in the console.",
        ),
    },
    "case_reopened": {
        "th": (
            "เรื่อง {reference} ถูกเปิดใหม่",
            "หัวหน้า SC-Operator เปิดเรื่อง {reference} ของ{office}ใหม่อีกครั้ง\nกรุณาดูเหตุผลและดำเนินการต่อในระบบ",
        ),
        "en": (
            "Case {reference} was reopened",
            "A head SC-Operator reopened case {reference} of {office}.\n"
            "Please read the reason and continue the work in the console.",
        ),
    },
    "committee_assigned": {
        "th": (
            "คณะทำงานของท่านได้รับมอบหมายเรื่อง {reference}",
            "คณะทำงานที่ท่านเป็นสมาชิกได้รับมอบหมายให้ดำเนินการเรื่อง {reference}\nกรุณารับทราบและดำเนินการในระบบ",
        ),
        "en": (
            "Your committee was assigned case {reference}",
            "A committee you sit on was assigned case {reference} to act on.\n"
            "Please acknowledge it and act in the console.",
        ),
    },
}
KINDS = tuple(TEMPLATES)
# Put before the body of a reminder sent late (params["late"]; the worker was down when it fell due).
LATE_NOTE = {
    "th": "(ส่งช้ากว่ากำหนด {late_minutes} นาที เนื่องจากระบบแจ้งเตือนหยุดทำงานชั่วคราว)",
    "en": "(Sent {late_minutes} min late: the reminder service was down when it fell due.)",
}
# Shown before the link in e-mails and LINE messages.
LINK_LABEL = {"th": "เปิดเรื่องในระบบ:", "en": "Open in the console:"}


# ---- rendering ----------------------------------------------------------------------------------------


class _Values(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "-"


def render(
    kind: str,
    locale: str,
    params: Mapping[str, str],
    *,
    office: Office | None = None,
    timezone: ZoneInfo | None = None,
) -> tuple[str, str]:
    """Subject and body of a `kind` message in `locale` (Thai unless "en"); phone-like runs masked."""
    if kind not in TEMPLATES:
        raise ValueError(f"unknown notification kind {kind!r}; one of {', '.join(KINDS)}")
    lang = "en" if locale == "en" else "th"
    values = _Values({k: str(v) for k, v in params.items()})
    reference = values.get("reference", "")
    if is_valid_reference(reference):
        values["reference"] = display_reference(reference)
    due_at = params.get("due_at")
    if due_at:
        due = datetime.fromisoformat(due_at)
        values["due"] = format_datetime(as_utc(due), timezone or ZoneInfo("Asia/Bangkok"), lang)
    elif "due_local" in params:
        values["due"] = str(params["due_local"])
    if office is not None:
        values["office"] = office.name_en if lang == "en" else office.name_th
    subject, body = TEMPLATES[kind][lang]
    if params.get("late"):
        body = LATE_NOTE[lang] + "\n" + body
    formatter = string.Formatter()
    subject = mask_phones(formatter.vformat(subject, (), values))[:SUBJECT_MAX]
    body = mask_phones(formatter.vformat(body, (), values))
    return subject, body


def absolute_link(link: str | None, base: str) -> str | None:
    if link and link.startswith("/") and not link.startswith("//") and base:
        return base.rstrip("/") + link
    return link


def dedupe_key(dedupe: str, suffix: str) -> str:
    key = f"{dedupe}:{suffix}"
    if len(key) <= DEDUPE_KEY_MAX:
        return key
    digest = hashlib.sha256(dedupe.encode()).hexdigest()[:32]
    return f"{dedupe[: DEDUPE_KEY_MAX - len(suffix) - 35]}~{digest}:{suffix}"
