"""No case left alone: which offices have an SC-Operator to receive a case, and where one goes instead.

An office without an active SC-Operator (a head counts: a head is an SC-Operator by position) would
hold a case nobody sees in their queue and nobody is reminded of. Routing there is refused with the
nearest office above that has one offered instead, or, with HOTLINE_ROUTE_WITHOUT_OPERATOR=parent, the
case goes to that office at once and the agent is warned. Forwarding to a district goes from the
province holding the case, which is itself that nearest office: there, going "to the parent" means the
case stays, so a forwarding to a district without an SC-Operator is refused whatever the setting.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from cases.models import Office, OfficeKind
from cases.staff import Role, RoleAssignment, User
from cases.texts import N_, Refusal

OFFER = "offer"  # refuse, and name the nearest office above that has an SC-Operator
PARENT = "parent"  # send the case to that office instead, with a warning
POLICIES = (OFFER, PARENT)
# The roles that make someone an SC-Operator of an office (what responsible_users reminds).
OPERATOR_ROLES = (Role.OPERATOR, Role.HEAD)


class NoOperatorThere(Refusal):
    """The chosen office has no active SC-Operator; `offered` is the nearest office above with one.

    `offered` is None when only the central Safety Center is above (a case is never routed there: it
    stays with the call centre until an office can take it).
    """

    def __init__(self, message: str, office: Office, above: Office | None, **params: object) -> None:
        # English names for logs and the shell; the console fills in names in the reader's language.
        super().__init__(message, office=office.name_en, **params)
        self.office, self.offered = office, above


def has_operator(session: Session, office: Office) -> bool:
    """Whether an active SC-Operator (or head SC-Operator) of the office would see a case sent there."""
    found = session.scalar(
        select(RoleAssignment.id)
        .join(User, User.id == RoleAssignment.user_id)
        .where(RoleAssignment.office_id == office.id, RoleAssignment.role.in_(OPERATOR_ROLES), User.active)
        .limit(1)
    )
    return found is not None


def nearest_covered_above(session: Session, office: Office) -> Office | None:
    """The first office above this one that has an SC-Operator and can receive a routed case.

    The central Safety Center is never offered: a case is not routed there (it waits at the call centre).
    """
    seen = {office.id}
    current = session.get(Office, office.parent_id) if office.parent_id is not None else None
    while current is not None and current.id not in seen:
        if current.kind == OfficeKind.CENTRAL:
            return None
        if has_operator(session, current):
            return current
        seen.add(current.id)
        current = session.get(Office, current.parent_id) if current.parent_id is not None else None
    return None


def routing_target(session: Session, office: Office, policy: str) -> Office:
    """Where an agent's routing to `office` goes: the office itself when it has an SC-Operator.

    Otherwise refused with the nearest office above offered (OFFER), or that office (PARENT, the
    caller warns); with nobody above but the centre, refused either way.
    """
    if has_operator(session, office):
        return office
    above = nearest_covered_above(session, office)
    if above is None:
        raise NoOperatorThere(
            N_(
                "%(office)s has no SC-Operator, and no office above it has one either: the case stays "
                "with the call centre until an office can take it."
            ),
            office,
            None,
        )
    if policy == PARENT:
        return above
    raise NoOperatorThere(
        N_("%(office)s has no SC-Operator to receive the case. Send it to %(offered)s instead?"),
        office,
        above,
        offered=above.name_en,
    )


def require_covered_district(session: Session, district: Office, holder: Office) -> None:
    """A forwarding to a district needs an SC-Operator there; the holding province is the one above."""
    if not has_operator(session, district):
        raise NoOperatorThere(
            N_(
                "%(office)s has no SC-Operator to receive the case. Keep it at %(offered)s and forward "
                "it to a person or a committee instead."
            ),
            district,
            holder,
            offered=holder.name_en,
        )
