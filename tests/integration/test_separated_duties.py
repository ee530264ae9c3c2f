"""Separated duties over HTTP: administration gives no case work, and reporters' numbers need two admins."""

# The console tests' `world` fixture is imported and used as the test arguments of the same name.
# ruff: noqa: F811

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from app import get_database
from cases.access import may_reveal
from cases.accounts import create_user
from cases.models import CENTRAL_OFFICE_CODE, Case, Office
from cases.office_staff import CASE_ROLES
from cases.staff import Role, RoleAssignment, RoleRequest, User
from tests.integration.test_console import World, as_user, audits, flashes, post, text, world  # noqa: F401

SELF_GRANT = "ท่านไม่สามารถมอบงานเรื่องร้องเรียนให้ตนเองได้ ผู้ดูแลคนอื่นของสำนักงานนี้ต้องเป็นผู้มอบ"
OWN_REQUEST = "ท่านเป็นผู้ขอบทบาทนี้ ผู้ดูแลคนอื่นต้องเป็นผู้อนุมัติ"
NOT_ADMIN = "เฉพาะผู้ดูแลสำนักงานนี้เท่านั้นที่แก้ไขเจ้าหน้าที่และคณะทำงานได้"


def add_staff(app: Flask, world: World, username: str, *roles: tuple[Role, str]) -> int:
    """A user made as the shell makes one (`flask users create`, `users grant`): no second admin needed."""
    with get_database(app).session() as session:
        user = create_user(session, username, username.title(), world.password)
        for role, code in roles:
            office = session.scalars(select(Office).where(Office.code == code)).one()
            session.add(RoleAssignment(user_id=user.id, office_id=office.id, role=role))
        session.commit()
        return user.id


def holds(app: Flask, user_id: int, office_id: int, role: Role) -> bool:
    with get_database(app).session() as session:
        return (
            session.scalar(
                select(RoleAssignment.id).where(
                    RoleAssignment.user_id == user_id,
                    RoleAssignment.office_id == office_id,
                    RoleAssignment.role == role,
                )
            )
            is not None
        )


def requests_for(app: Flask, user_id: int) -> list[RoleRequest]:
    with get_database(app).session() as session:
        return list(session.scalars(select(RoleRequest).where(RoleRequest.user_id == user_id)))


def refusals(app: Flask) -> list[dict[str, object]]:
    return [a.detail for a in audits(app, "staff_change_refused")]


def test_an_admins_self_grant_is_refused_and_audited(app: Flask, world: World) -> None:
    office = world.offices["50"]
    admin = as_user(app, world, "admin50")
    for role in ("operator", "head", "action"):
        post(admin, f"/console/offices/{office}/roles", username="admin50", role=role)
        assert ("error", SELF_GRANT) in flashes(admin)
        assert not holds(app, world.users["admin50"], office, Role(role))
    assert not requests_for(app, world.users["admin50"])
    assert refusals(app) == [
        {"reason": "self_grant", "office": "50", "change": "grant_role", "user": "admin50", "role": r}
        for r in ("operator", "head", "action")
    ]
    refused = audits(app, "staff_change_refused")
    assert {a.user_id for a in refused} == {world.users["admin50"]}
    # A seat on a committee is case work too: an admin (here also SC-Action) cannot take one.
    with get_database(app).session() as session:
        session.add(RoleAssignment(user_id=world.users["admin50"], office_id=office, role=Role.ACTION))
        session.commit()
    post(admin, f"/console/committees/{world.committee}/members", username="admin50")
    assert ("error", SELF_GRANT) in flashes(admin)
    assert refusals(app)[-1]["change"] == "add_committee_member"


def test_a_lone_admins_head_grant_waits_for_a_second_admin(app: Flask, world: World) -> None:
    office, newcomer = world.offices["50"], add_staff(app, world, "newcomer")
    admin = as_user(app, world, "admin50")
    post(admin, f"/console/offices/{office}/roles", username="newcomer", role="head")
    assert ("ok", "บทบาทของ Newcomer รอผู้ดูแลคนที่สองอนุมัติ") in flashes(admin)
    assert not holds(app, newcomer, office, Role.HEAD)
    (request,) = requests_for(app, newcomer)
    assert request.status == "pending" and request.requested_by == world.users["admin50"]
    assert [a.detail["role"] for a in audits(app, "role_requested")] == ["head"]
    page = text(admin.get(f"/console/offices/{office}"))
    assert "บทบาทที่รอผู้ดูแลคนที่สองอนุมัติ" in page
    assert f"/console/role-requests/{request.id}/approve" not in page  # not offered to the one who asked
    # Approving it anyway: refused, audited, and the role is still not given.
    post(admin, f"/console/role-requests/{request.id}/approve")
    assert ("error", OWN_REQUEST) in flashes(admin)
    assert refusals(app) == [
        {"reason": "own_request", "office": "50", "change": "approve_role", "request": request.id}
    ]
    assert not holds(app, newcomer, office, Role.HEAD)
    # Nobody else's word counts either: an SC-Operator of the office is no admin.
    op = as_user(app, world, "op50")
    post(op, f"/console/role-requests/{request.id}/approve")
    assert ("error", NOT_ADMIN) in flashes(op) and refusals(app)[-1]["reason"] == "not_admin"
    # Another office's staff do not even see it.
    assert (
        post(as_user(app, world, "op10"), f"/console/role-requests/{request.id}/approve").status_code == 403
    )
    # An admin of an office above it (the central office) approves: now the role is given.
    add_staff(app, world, "boss", (Role.ADMIN, CENTRAL_OFFICE_CODE))
    boss = as_user(app, world, "boss")
    assert f"/console/role-requests/{request.id}/approve" in text(boss.get(f"/console/offices/{office}"))
    post(boss, f"/console/role-requests/{request.id}/approve")
    assert ("ok", "มอบบทบาทแล้ว") in flashes(boss)
    assert holds(app, newcomer, office, Role.HEAD)
    (granted,) = [a for a in audits(app, "role_granted") if a.detail["user"] == "newcomer"]
    assert granted.detail["requested_by"] == world.users["admin50"]
    assert granted.user_id != world.users["admin50"]
    # Decided once: approving again changes nothing.
    post(boss, f"/console/role-requests/{request.id}/approve")
    assert ("error", "คำขอนี้ได้รับการพิจารณาแล้ว") in flashes(boss)


def test_a_second_admin_of_the_office_approves_or_declines(app: Flask, world: World) -> None:
    office = world.offices["50"]
    first, second = add_staff(app, world, "first"), add_staff(app, world, "second")
    add_staff(app, world, "admin50b", (Role.ADMIN, "50"))
    admin = as_user(app, world, "admin50")
    post(admin, f"/console/offices/{office}/roles", username="first", role="operator")
    post(admin, f"/console/offices/{office}/roles", username="second", role="operator")
    (one,), (two,) = requests_for(app, first), requests_for(app, second)
    other = as_user(app, world, "admin50b")
    post(other, f"/console/role-requests/{one.id}/approve")
    post(other, f"/console/role-requests/{two.id}/decline")
    assert holds(app, first, office, Role.OPERATOR) and not holds(app, second, office, Role.OPERATOR)
    assert [r.status for r in requests_for(app, second)] == ["declined"]
    assert [a.detail["user"] for a in audits(app, "role_request_declined")] == ["second"]
    assert not refusals(app)


def test_the_person_a_role_is_for_cannot_approve_it(app: Flask, world: World) -> None:
    """A second admin asked to be made head: approving their own head role is a self-grant."""
    office = world.offices["50"]
    admin50b = add_staff(app, world, "admin50b", (Role.ADMIN, "50"))
    post(as_user(app, world, "admin50"), f"/console/offices/{office}/roles", username="admin50b", role="head")
    (request,) = requests_for(app, admin50b)
    client = as_user(app, world, "admin50b")
    post(client, f"/console/role-requests/{request.id}/approve")
    assert ("error", SELF_GRANT) in flashes(client)
    assert not holds(app, admin50b, office, Role.HEAD)
    assert refusals(app)[-1]["change"] == "approve_role"


# ---- the matrix: admin versus case rights ---------------------------------------------------------------

ACTORS = ["op50", "admin50", "boss"]  # no admin; the office's admin; an admin of the office above it
ROLES = [Role.OPERATOR, Role.HEAD, Role.ACTION, Role.ADMIN]


def outcome(actor: str, to_self: bool, role: Role) -> str:
    """What asking for `role` at Chiang Mai gives: the role, a request waiting, or a refusal."""
    if actor == "op50":
        return "refused"  # administration is the admins' (op50's own SC-Operator role is not new)
    if to_self:
        if role in CASE_ROLES:
            return "refused"  # separated duties
        # admin50 is its admin already; boss's own admin seat needs a second admin like anyone's.
        return "refused" if actor == "admin50" else "pending"
    # The admin role too: else one admin makes a second account of theirs an admin to approve with.
    return "pending" if role in (Role.OPERATOR, Role.HEAD, Role.ADMIN) else "granted"


def test_admin_versus_case_rights_matrix(app: Flask, world: World) -> None:
    office = world.offices["50"]
    add_staff(app, world, "boss", (Role.ADMIN, CENTRAL_OFFICE_CODE))
    clients: dict[str, FlaskClient] = {a: as_user(app, world, a) for a in ACTORS}
    with get_database(app).session() as session:
        ids = {u.username: u.id for u in session.scalars(select(User))}
    mismatches, refused = [], 0
    for actor in ACTORS:
        other = f"new-{actor}"
        ids[other] = add_staff(app, world, other)
        for to_self in (True, False):
            for role in ROLES:
                grantee = actor if to_self else other
                held = holds(app, ids[grantee], office, role)
                post(clients[actor], f"/console/offices/{office}/roles", username=grantee, role=str(role))
                if not held and holds(app, ids[grantee], office, role):
                    got = "granted"
                elif any(r.role == role and r.status == "pending" for r in requests_for(app, ids[grantee])):
                    got = "pending"
                else:
                    got = "refused"
                want = outcome(actor, to_self, role)
                refused += want == "refused" and not (actor == "admin50" and role == Role.ADMIN)
                if got != want:
                    mismatches.append(f"{actor:8} self={to_self!s:5} {role:8} want {want} got {got}")
    assert not mismatches, "\n" + "\n".join(mismatches)
    # Every refusal of separated duties is on record (admin50 asking for the admin role it holds is
    # merely a mistake: "already has this role").
    assert len(refusals(app)) == refused == 8 + 3 + 3
    reasons = [r["reason"] for r in refusals(app)]
    assert reasons.count("not_admin") == 8 and reasons.count("self_grant") == 6


def test_roles_held_before_the_rule_are_kept(app: Flask, world: World) -> None:
    """An admin who was already an SC-Operator stays one: the rule governs new grants."""
    both = add_staff(app, world, "both", (Role.ADMIN, "50"), (Role.OPERATOR, "50"))
    with get_database(app).session() as session:
        user, case = session.get(User, both), session.get(Case, world.cases["routed_50"])
        assert user is not None and case is not None and may_reveal(session, user, case)
    client = as_user(app, world, "both")
    assert client.get(f"/console/cases/{world.cases['routed_50']}").status_code == 200
    assert holds(app, both, world.offices["50"], Role.OPERATOR)
