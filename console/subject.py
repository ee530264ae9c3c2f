"""The console's erasure and access requests: office admins ask, a second admin approves, and export.

On the case's audit trail page (admins see no case pages: separated duties). One admin asks for the
case's erasure with a reason; another approves (the case is erased in the decision's transaction, its
recordings' files and Twilio copies just after) or rejects. An admin downloads the export zip, the
reporter's number masked (a verified request with the number goes through the shell). All audited.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Flask, current_app, redirect, request, send_file, url_for
from flask.typing import ResponseReturnValue
from werkzeug.wrappers import Response

from cases import subject
from cases.models import Case, ErasureRequest
from cases.reference import display_reference
from cases.retention.sweep import RetentionSweep
from cases.staff import User
from cases.subject.erase import Erased
from console.base import apply, cipher, clock, db, end_writes, me, refuse, require_login
from console.i18n import _
from console.playback import sealer
from infra.extensions import Shared

bp = Blueprint("subject", __name__, url_prefix="/console/subject")
bp.before_request(require_login)

# Makes the sweep that finishes an approved erasure: the files, then Twilio's copies (app.py installs it).
erasure_sweep: Shared[Callable[[], RetentionSweep]] = Shared("hotline.subject_sweep")
REASON_LIMIT = 500


@dataclass
class Panel:
    """What the trail page shows of erasure: whether the reader may act, and the request waiting."""

    may: bool
    pending: ErasureRequest | None = None
    requester: str = ""
    mine: bool = False


def panel(case: Case) -> Panel:
    if not subject.may_erase(db(), me(), case):
        return Panel(may=False)
    pending = subject.pending_request(db(), case)
    if pending is None:
        return Panel(may=True)
    requester = db().get(User, pending.requested_by)
    name = requester.display_name if requester else ""
    return Panel(may=True, pending=pending, requester=name, mine=pending.requested_by == me().id)


def _case(case_id: int) -> Case:
    case = db().get(Case, case_id)
    if case is None or not subject.may_erase(db(), me(), case):
        refuse("case", case_id)
    return case


def _back(case_id: int) -> str:
    return url_for("audit.case_trail", case_id=case_id, _anchor="erasure")


@bp.post("/cases/<int:case_id>/erasure")
def request_erasure(case_id: int) -> Response:
    case = _case(case_id)
    reason = request.form.get("reason", "")[:REASON_LIMIT]
    return apply(
        _back(case_id),
        lambda: subject.request_erasure(db(), case, me(), reason, now=clock()),
        _("The erasure was asked for. It is done when another admin approves it."),
    )


@bp.post("/erasures/<int:request_id>/decision")
def decide(request_id: int) -> ResponseReturnValue:
    row = db().get(ErasureRequest, request_id)
    case = db().get(Case, row.case_id) if row is not None else None
    if row is None or case is None or not subject.may_erase(db(), me(), case):
        refuse("erasure", request_id)
    case_id = case.id
    if request.form.get("decision") == "approve":
        done: list[Erased] = []

        def work() -> None:
            done.append(subject.approve_erasure(db(), row, me(), now=clock()))

        answer = apply(
            _back(case_id), work, _("The case's personal data was erased. Its handling record stays.")
        )
        if done:
            end_writes()  # the decision is committed; the files and Twilio's copies go outside its lock
            subject.finish(erasure_sweep(current_app)(), done[0])
        return answer
    if request.form.get("decision") == "reject":
        return apply(
            _back(case_id),
            lambda: subject.reject_erasure(db(), row, me(), now=clock()),
            _("The erasure request was rejected: nothing was erased."),
        )
    return redirect(_back(case_id))


@bp.post("/cases/<int:case_id>/export")
def export(case_id: int) -> Any:
    """The export zip, the reporter's number masked; built in memory (it holds plain audio), audited."""
    case = _case(case_id)
    out = io.BytesIO()
    options = subject.ExportOptions(cipher(), sealer(current_app._get_current_object()))  # type: ignore[attr-defined]
    subject.export_case(db(), case, out, options, actor_id=me().id, now=clock())
    db().commit()
    out.seek(0)
    name = f"case-{display_reference(case.reference)}.zip"
    return send_file(out, mimetype="application/zip", as_attachment=True, download_name=name)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    app.jinja_env.globals["erasure_panel"] = panel
