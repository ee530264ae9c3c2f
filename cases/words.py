"""The words for a case's states, hazard groups, staff roles and moves, marked for translation.

One table each, for the workflow's refusals (cases.workflow) and the console's pages (console.i18n):
the English here is the msgid; the catalogue holds the Thai.
"""

from __future__ import annotations

from cases.models import CaseStatus, HazardGroup
from cases.staff import Role
from cases.texts import N_

STATE_WORDS: dict[CaseStatus, str] = {
    CaseStatus.DRAFT: N_("New from the phone line"),
    CaseStatus.ROUTED: N_("At an office"),
    CaseStatus.PROPOSED: N_("Waiting for approval"),
    CaseStatus.ASSIGNED: N_("Assigned"),
    CaseStatus.IN_ACTION: N_("Being worked"),
    CaseStatus.RESOLVED: N_("Resolved"),
}
HAZARD_WORDS: dict[HazardGroup, str] = {
    HazardGroup.VIOLENCE: N_("Violence"),
    HazardGroup.ACCIDENT: N_("Accident"),
    HazardGroup.RIGHTS_VIOLATION: N_("Rights violation"),
    HazardGroup.HEALTH_HARM: N_("Physical or mental health harm"),
    HazardGroup.UNSPECIFIED: N_("Not specified"),
}
ROLE_WORDS: dict[Role, str] = {
    Role.AGENT: N_("Call-centre agent"),
    Role.OPERATOR: N_("SC-Operator"),
    Role.HEAD: N_("Head SC-Operator"),
    Role.ACTION: N_("SC-Action"),
    Role.ADMIN: N_("Office admin"),
}
# The workflow's moves (cases.workflow.Move), as an action on a case.
MOVE_WORDS: dict[str, str] = {
    "route": N_("route"),
    "propose": N_("propose forwarding"),
    "approve": N_("approve"),
    "reject": N_("reject"),
    "acknowledge": N_("acknowledge"),
    "record_action": N_("record an action"),
    "resolve": N_("resolve"),
    "withdraw": N_("withdraw the proposal"),
    "reassign": N_("reassign"),
    "reopen": N_("reopen"),
}
