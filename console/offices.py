"""The staff console's office pages: who works where, in which role, and the SC-Action committees.

Anyone with a role at an office (or above it) sees its staff; its admins (or those above) change them
through cases.office_staff, which check and audit every change. A head, SC-Operator or agent role an
admin asks for waits on the page until a second admin approves it; refusals of separated duties are
audited after the rollback.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from cases import access, office_staff
from cases.models import Office
from cases.office_staff import DutyRefused
from cases.staff import Committee, Role, RoleRequest, User
from cases.texts import Refusal
from console import queries
from console.base import apply, clock, db, me, require_login
from console.i18n import _

bp = Blueprint("offices", __name__, url_prefix="/console")
bp.before_request(require_login)


def _office_or_403(office_id: int) -> Office:
    office = db().get(Office, office_id)
    if office is None:
        abort(404)
    if not access.can_see_staff(db(), me(), office):
        abort(403)
    return office


def _committee_or_403(committee_id: int) -> tuple[Committee, Office]:
    committee = db().get(Committee, committee_id)
    if committee is None:
        abort(404)
    return committee, _office_or_403(committee.office_id)


def _office_page(office: Office) -> str:
    return url_for("offices.office", office_id=office.id)


def _apply(back: str, work: Callable[[], object], done: str | Callable[[object], str]) -> Response:
    """console.base.apply, a refusal of separated duties written to the audit trail after the rollback."""
    return apply(back, work, done, after_refusal=_audit_duty_refusal)


def _audit_duty_refusal(exc: Refusal) -> None:
    if isinstance(exc, DutyRefused):
        office_staff.audit_refusal(db(), me(), exc, clock)


def _role() -> Role | None:
    try:
        return Role(request.form.get("role", ""))
    except ValueError:
        return None


def _person(field: str) -> User | None:
    raw = request.form.get(field, "")[:80]
    if field == "user_id":
        return db().get(User, int(raw)) if raw.isdigit() else None
    return queries.user_by_username(db(), raw)


@bp.get("/offices")
def offices() -> str:
    mine = queries.my_offices(db(), me())
    short = set(office_staff.offices_needing_operators(db(), [o.id for o in mine]))
    below = {o.id: queries.offices_with_staff(db(), o) for o in mine if access.administers(db(), me(), o)}
    return render_template("console/offices.html", nav="offices", offices=mine, short=short, below=below)


@bp.get("/offices/<int:office_id>")
def office(office_id: int) -> str:
    found = _office_or_403(office_id)
    staff = queries.office_staff(db(), found)
    return render_template(
        "console/office.html",
        nav="offices",
        s=staff,
        can_admin=access.administers(db(), me(), found),
        roles=[r for r in Role if r != Role.AGENT or found.parent_id is None],
        me_id=me().id,
        requests=office_staff.pending_role_requests(db(), found),
    )


@bp.post("/offices/<int:office_id>/roles")
def grant(office_id: int) -> Response:
    found = _office_or_403(office_id)
    person, role = _person("username"), _role()
    if person is None or role is None:
        flash(_("No such user name, or no role chosen."), "error")
        return redirect(url_for("offices.office", office_id=office_id))

    def done(given: object) -> str:
        if isinstance(given, RoleRequest):
            return _("The role for %(name)s waits for a second admin's approval.", name=person.display_name)
        return _("%(name)s now has that role here.", name=person.display_name)

    return _apply(
        _office_page(found), lambda: office_staff.grant_role(db(), found, person, role, actor=me()), done
    )


def _role_request_or_403(request_id: int) -> tuple[RoleRequest, Office]:
    found = db().get(RoleRequest, request_id)
    if found is None:
        abort(404)
    return found, _office_or_403(found.office_id)


@bp.post("/role-requests/<int:request_id>/approve")
def approve_request(request_id: int) -> Response:
    found, office = _role_request_or_403(request_id)
    return _apply(
        _office_page(office),
        lambda: office_staff.approve_role_request(db(), found, actor=me(), clock=clock),
        _("The role was given."),
    )


@bp.post("/role-requests/<int:request_id>/decline")
def decline_request(request_id: int) -> Response:
    found, office = _role_request_or_403(request_id)
    return _apply(
        _office_page(office),
        lambda: office_staff.decline_role_request(db(), found, actor=me(), clock=clock),
        _("The request was declined."),
    )


@bp.post("/offices/<int:office_id>/roles/remove")
def revoke(office_id: int) -> Response:
    found = _office_or_403(office_id)
    person, role = _person("user_id"), _role()
    if person is None or role is None:
        abort(400)
    return _apply(
        _office_page(found),
        lambda: office_staff.revoke_role(db(), found, person, role, actor=me()),
        _("The role was removed from %(name)s.", name=person.display_name),
    )


@bp.post("/offices/<int:office_id>/committees")
def add_committee(office_id: int) -> Response:
    found = _office_or_403(office_id)
    name = request.form.get("name", "")[:200]
    return _apply(
        _office_page(found),
        lambda: office_staff.create_committee(db(), found, name, actor=me()),
        _("The committee was created."),
    )


@bp.post("/committees/<int:committee_id>/remove")
def remove_committee(committee_id: int) -> Response:
    committee, found = _committee_or_403(committee_id)
    return _apply(
        _office_page(found),
        lambda: office_staff.remove_committee(db(), committee, actor=me()),
        _("The committee was removed."),
    )


@bp.post("/committees/<int:committee_id>/members")
def add_member(committee_id: int) -> Response:
    committee, found = _committee_or_403(committee_id)
    person = _person("username")
    if person is None:
        flash(_("No such user name."), "error")
        return redirect(url_for("offices.office", office_id=found.id))
    return _apply(
        _office_page(found),
        lambda: office_staff.add_committee_member(db(), committee, person, actor=me()),
        _("%(name)s joined the committee.", name=person.display_name),
    )


@bp.post("/committees/<int:committee_id>/members/remove")
def remove_member(committee_id: int) -> Response:
    committee, found = _committee_or_403(committee_id)
    person = _person("user_id")
    if person is None:
        abort(400)
    return _apply(
        _office_page(found),
        lambda: office_staff.remove_committee_member(db(), committee, person, actor=me()),
        _("%(name)s left the committee.", name=person.display_name),
    )
