"""What the console reads: the queue, one case with everything around it, approvals, assignments, staff.

Reads only; every change goes through cases.workflow. Each query is limited to what the user may see
(access.visibility), so a view never has to remember to filter.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, func, or_, select, true
from sqlalchemy.orm import Session, joinedload

from cases import access, callbacks, transcript_words, workflow
from cases.access import WhoAmI
from cases.models import (
    CENTRAL_OFFICE_CODE,
    OPEN_CALLBACK_STATES,
    Acknowledgement,
    Assignment,
    Call,
    Callback,
    CallbackChoice,
    CallEvent,
    Case,
    CaseAction,
    CaseEvent,
    CaseStatus,
    ForwardingProposal,
    HazardGroup,
    Office,
    OfficeKind,
    TranscriptCorrection,
)
from cases.retention import hold as retention_hold
from cases.staff import Committee, CommitteeMember, Role, RoleAssignment, User
from cases.workflow import TRANSITIONS, Move
from console import queue_order
from infra.clock import utcnow
from transcription.models import Recording, StorageStatus, Transcript

PER_PAGE = 50
OPEN_STATES = tuple(s for s in CaseStatus if s != CaseStatus.RESOLVED)
STATE_FILTERS = ("open", "all", *(str(s) for s in CaseStatus))
CALLBACK_FILTERS = ("all", "with", "anonymous", "overdue")
ORDERS = queue_order.ORDERS


# ---- the queue --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueFilter:
    state: str = "open"  # open (all but resolved) | all | one CaseStatus
    hazard: str = ""  # "" (any) | one HazardGroup
    office_id: int | None = None
    callback: str = (
        "all"  # all | with (a number to call back) | anonymous | overdue (an open call back past due)
    )
    # due (the default: the open call back due soonest on top) | hazard | oldest | newest (queue_order)
    order: str = queue_order.DEFAULT_ORDER
    page: int = 1

    @classmethod
    def from_args(cls, args: Mapping[str, str]) -> QueueFilter:
        """Read the query string; anything unknown falls back to the default rather than failing."""
        state = args.get("state", "open")
        hazard = args.get("hazard", "")
        callback = args.get("callback", "all")
        order = args.get("order", queue_order.DEFAULT_ORDER)
        office = args.get("office", "")
        page = args.get("page", "1")
        return cls(
            state=state if state in STATE_FILTERS else "open",
            hazard=hazard if hazard in {str(h) for h in HazardGroup} else "",
            office_id=int(office) if office.isdigit() else None,
            callback=callback if callback in CALLBACK_FILTERS else "all",
            order=order if order in ORDERS else queue_order.DEFAULT_ORDER,
            page=max(int(page), 1) if page.isdigit() and len(page) < 7 else 1,
        )

    def args(self, **changes: Any) -> dict[str, str]:
        """The query string of this filter with some values changed (non-default values only)."""
        f = replace(self, **changes)
        out = {
            "state": f.state if f.state != "open" else "",
            "hazard": f.hazard,
            "office": str(f.office_id) if f.office_id else "",
            "callback": f.callback if f.callback != "all" else "",
            "order": f.order if f.order != queue_order.DEFAULT_ORDER else "",
            "page": str(f.page) if f.page != 1 else "",
        }
        return {k: v for k, v in out.items() if v}


def callback_overdue(now: datetime) -> ColumnElement[bool]:
    """Cases whose call back is still open and past its due time.

    An uncorrelated IN over ix_callbacks_open_due (state, due_at): the overdue callbacks are found once,
    not looked up per case of the queue.
    """
    overdue = select(Callback.case_id).where(Callback.state.in_(OPEN_CALLBACK_STATES), Callback.due_at < now)
    return Case.id.in_(overdue)


@dataclass
class QueuePage:
    filter: QueueFilter
    cases: list[Case]
    counts: dict[str, int]  # per state, under every filter but the state one
    total: int  # under every filter
    pages: int
    callbacks: dict[int, Callback] = field(default_factory=dict)  # by case id, for the page's cases
    names: dict[int, str] = field(default_factory=dict)  # who took those call backs

    def overdue(self, callback: Callback, now: datetime) -> bool:
        return callback.state in OPEN_CALLBACK_STATES and callback.due_at < now

    def urgency(self, case_id: int, now: datetime, soon: timedelta = queue_order.DUE_SOON) -> str:
        """ "overdue", "soon" or "" for a row of the page (queue_order.urgency)."""
        return queue_order.urgency(self.callbacks.get(case_id), now, soon)


def _queue_conditions(
    session: Session, user: User, f: QueueFilter, now: datetime
) -> list[ColumnElement[bool]]:
    conditions = [access.visibility(session, user)]
    if f.hazard:
        conditions.append(Case.category == f.hazard)
    if f.office_id is not None:
        office = session.get(Office, f.office_id)
        if office is not None and office.kind == OfficeKind.PROVINCE:
            # A province means its whole area: the cases at its districts too.
            conditions.append(or_(Case.office_id == office.id, Case.province_code == office.province_code))
        else:
            conditions.append(Case.office_id == f.office_id)
    if f.callback == "with":
        conditions.append(Case.callback_choice != CallbackChoice.NONE)
    elif f.callback == "anonymous":
        conditions.append(Case.callback_choice == CallbackChoice.NONE)
    elif f.callback == "overdue":
        conditions.append(callback_overdue(now))
    return conditions


def queue(
    session: Session, user: User, f: QueueFilter, *, per_page: int = PER_PAGE, now: datetime | None = None
) -> QueuePage:
    """One page of the cases the user may see, with the number of cases in each state."""
    now = now or utcnow()
    conditions = _queue_conditions(session, user, f, now)
    counts = {str(s): 0 for s in CaseStatus}
    for status, n in session.execute(
        select(Case.status, func.count(Case.id)).where(*conditions).group_by(Case.status)
    ):
        counts[str(status)] = n
    if f.state == "open":
        states: tuple[str, ...] = tuple(str(s) for s in OPEN_STATES)
    elif f.state == "all":
        states = tuple(str(s) for s in CaseStatus)
    else:
        states = (f.state,)
    total = sum(counts.get(s, 0) for s in states)
    pages = max(math.ceil(total / per_page), 1)
    page = min(f.page, pages)
    state_condition = Case.status.in_(states) if f.state != "all" else true()
    # Pick the page's ids first (an index-only scan, even 50,000 rows deep), then load those rows.
    ids = list(
        session.scalars(
            queue_order.sorted_ids(select(Case.id).where(*conditions, state_condition), f.order)
            .limit(per_page)
            .offset((page - 1) * per_page)
        )
    )
    loaded = {
        c.id: c
        for c in session.scalars(select(Case).options(joinedload(Case.office)).where(Case.id.in_(ids)))
    }
    cases = [loaded[i] for i in ids if i in loaded]
    # The page's call backs (due time, state, who took it): one query for the page, not one per row.
    page_callbacks = {
        cb.case_id: cb for cb in session.scalars(select(Callback).where(Callback.case_id.in_(ids)))
    }
    taken = {cb.assignee_id for cb in page_callbacks.values() if cb.assignee_id}
    names = (
        dict(session.execute(select(User.id, User.display_name).where(User.id.in_(taken))).all())
        if taken
        else {}
    )
    return QueuePage(
        filter=replace(f, page=page),
        cases=cases,
        counts=counts,
        total=total,
        pages=pages,
        callbacks=page_callbacks,
        names=names,
    )


def queue_offices(session: Session, who: WhoAmI) -> list[Office]:
    """The offices to filter the queue by: the user's own and those under them (every province, centrally)."""
    own = list(who.roles)
    if who.central:
        return list(
            session.scalars(
                select(Office)
                .where(or_(Office.kind == OfficeKind.PROVINCE, Office.id.in_(own)))
                .order_by(Office.kind, Office.code)
            )
        )
    return list(
        session.scalars(
            select(Office).where(or_(Office.id.in_(own), Office.parent_id.in_(own))).order_by(Office.code)
        )
    )


# ---- one case -------------------------------------------------------------------------------------------


def visible_case(session: Session, user: User, case_id: int) -> Case | None:
    """The case if it exists and the user may see it; None either way otherwise (answered with 404)."""
    return session.scalar(select(Case).where(Case.id == case_id, access.visibility(session, user)))


@dataclass
class RecordingView:
    recording: Recording
    transcript: Transcript | None
    words: list[transcript_words.ShownWord]
    correction: TranscriptCorrection | None
    corrections: int
    playable: bool
    # The corrected transcript against the machine one, word by word (empty without a correction).
    changes: list[transcript_words.Change] = field(default_factory=list)

    @property
    def machine_text(self) -> str:
        return (self.transcript.text or "") if self.transcript else ""

    @property
    def draft(self) -> bool:
        """A Whisper transcript: the page says it is a rough machine draft."""
        return self.transcript is not None and transcript_words.is_machine_draft(self.transcript.engine)

    @property
    def changed(self) -> bool:
        return any(change.kind != "same" for change in self.changes)


def machine_words(transcript: Transcript | None) -> list[transcript_words.ShownWord]:
    """The machine transcript's words as people read them (Thai segmented), low-confidence ones marked."""
    if transcript is None or not transcript.text:
        return []
    return transcript_words.marked_words(transcript.text, transcript.language, transcript.words)


@dataclass
class CaseView:
    case: Case
    office: Office
    forwarded_from: Office | None
    recordings: list[RecordingView]
    call: Call | None
    call_events: list[CallEvent]
    events: list[CaseEvent]
    proposals: list[ForwardingProposal]
    pending: ForwardingProposal | None
    assignment: Assignment | None
    assignees: list[int]
    acknowledged: set[int]
    actions: list[CaseAction]
    names: dict[int, str]
    committees: dict[int, Committee]
    offices: dict[int, Office]
    can_route: bool = False
    can_correct: bool = False
    can_summarise: bool = False
    can_propose: bool = False
    can_decide: bool = False
    can_acknowledge: bool = False
    can_work: bool = False
    can_reveal: bool = False
    can_hold: bool = False  # a head of the case's office: set or release its legal hold
    provinces: list[Office] = field(default_factory=list)
    districts: list[Office] = field(default_factory=list)
    action_people: list[User] = field(default_factory=list)
    office_committees: list[Committee] = field(default_factory=list)
    child_offices: list[Office] = field(default_factory=list)
    # The call back: its due time and state, and who is responsible for it now (cases.callbacks).
    callback: Callback | None = None
    callback_office: Office | None = None  # whose staff hear the reminders (the call centre for a draft)
    callback_people: list[User] = field(default_factory=list)  # that office's SC-Operators
    callback_assignee: User | None = None  # who took it, when someone did
    can_cancel_callback: bool = False

    @property
    def office_by_code(self) -> dict[str, Office]:
        return {o.code: o for o in self.offices.values()}


def case_view(session: Session, user: User, case: Case, who: WhoAmI) -> CaseView:
    """Everything the case page shows, and which of its forms this user may use."""
    office = session.get(Office, case.office_id)
    assert office is not None
    call = session.get(Call, case.call_id) if case.call_id else None
    call_events = (
        list(session.scalars(select(CallEvent).where(CallEvent.call_id == call.id).order_by(CallEvent.id)))
        if call
        else []
    )
    proposals = list(
        session.scalars(
            select(ForwardingProposal)
            .where(ForwardingProposal.case_id == case.id)
            .order_by(ForwardingProposal.id.desc())
        )
    )
    assignment = access.active_assignment(session, case)
    acknowledged = (
        set(
            session.scalars(
                select(Acknowledgement.user_id).where(Acknowledgement.assignment_id == assignment.id)
            )
        )
        if assignment
        else set()
    )
    view = CaseView(
        case=case,
        office=office,
        forwarded_from=(
            session.get(Office, case.forwarded_from_office_id) if case.forwarded_from_office_id else None
        ),
        recordings=_recording_views(session, case),
        call=call,
        call_events=call_events,
        events=list(
            session.scalars(select(CaseEvent).where(CaseEvent.case_id == case.id).order_by(CaseEvent.id))
        ),
        proposals=proposals,
        pending=next((p for p in proposals if p.status == "pending"), None),
        assignment=assignment,
        assignees=sorted(access.assignees(session, assignment)) if assignment else [],
        acknowledged=acknowledged,
        actions=list(
            session.scalars(select(CaseAction).where(CaseAction.case_id == case.id).order_by(CaseAction.id))
        ),
        names={},
        committees={},
        offices={},
    )
    _whom_and_where(session, view)
    _permissions(session, user, who, view)
    if case.callback_requested:
        _callback_view(session, user, case, view)
    _form_choices(session, view)
    return view


def _recording_views(session: Session, case: Case) -> list[RecordingView]:
    """The case's recordings with their machine transcript and the latest correction for this case."""
    views = []
    for rec in session.scalars(select(Recording).where(Recording.case_id == case.id).order_by(Recording.id)):
        transcript = session.scalar(select(Transcript).where(Transcript.recording_id == rec.id))
        correction = session.scalar(
            select(TranscriptCorrection)
            .where(TranscriptCorrection.recording_id == rec.id, TranscriptCorrection.case_id == case.id)
            .order_by(TranscriptCorrection.id.desc())
            .limit(1)
        )
        n = session.scalar(
            select(func.count(TranscriptCorrection.id)).where(TranscriptCorrection.recording_id == rec.id)
        )
        changes = []
        if correction is not None:
            language = transcript.language if transcript else case.language
            machine = (transcript.text or "") if transcript else ""
            changes = transcript_words.compare(machine, correction.text, language)
        views.append(
            RecordingView(
                recording=rec,
                transcript=transcript,
                words=machine_words(transcript),
                correction=correction,
                corrections=n or 0,
                playable=rec.storage_status == StorageStatus.STORED and bool(rec.stored_path),
                changes=changes,
            )
        )
    return views


def _whom_and_where(session: Session, view: CaseView) -> None:
    """The names of the people, and the committees and offices, that the page's history mentions."""
    proposals, events = view.proposals, view.events
    user_ids = {e.actor_id for e in events if e.actor_id} | set(view.assignees)
    user_ids |= {a.user_id for a in view.actions} | {p.proposed_by for p in proposals}
    user_ids |= {p.decided_by for p in proposals if p.decided_by} | {
        p.to_user_id for p in proposals if p.to_user_id
    }
    user_ids |= {r.correction.user_id for r in view.recordings if r.correction}
    view.names = dict(session.execute(select(User.id, User.display_name).where(User.id.in_(user_ids))).all())
    committee_ids = {p.to_committee_id for p in proposals if p.to_committee_id}
    if view.assignment and view.assignment.committee_id:
        committee_ids.add(view.assignment.committee_id)
    view.committees = {
        c.id: c for c in session.scalars(select(Committee).where(Committee.id.in_(committee_ids)))
    }
    office_ids = {p.to_office_id for p in proposals if p.to_office_id} | {p.office_id for p in proposals}
    codes = {str(e.detail["office"]) for e in events if isinstance(e.detail, dict) and e.detail.get("office")}
    view.offices = {
        o.id: o
        for o in session.scalars(select(Office).where(or_(Office.id.in_(office_ids), Office.code.in_(codes))))
    }


def _permissions(session: Session, user: User, who: WhoAmI, view: CaseView) -> None:
    """Which of the page's forms the user may use (the service functions still decide)."""
    case, status = view.case, CaseStatus(view.case.status)
    operator_here = who.has(Role.OPERATOR, case.office_id)
    view.can_route = who.central and who.has(Role.AGENT) and (status, Move.ROUTE) in TRANSITIONS
    view.can_correct = workflow.may_edit_content(session, user, case)
    view.can_summarise = status == CaseStatus.ROUTED and operator_here
    view.can_propose = (status, Move.PROPOSE) in TRANSITIONS and operator_here
    view.can_decide = view.pending is not None and workflow.can_decide(session, user, view.pending)
    view.can_acknowledge = (
        status,
        Move.ACKNOWLEDGE,
    ) in TRANSITIONS and user.id in workflow.pending_acknowledgements(session, case)
    view.can_work = workflow.may_work(session, user, case)
    view.can_reveal = case.callback_requested and access.may_reveal(session, user, case)
    view.can_hold = retention_hold.may_hold(session, user, case)


def _form_choices(session: Session, view: CaseView) -> None:
    """What the routing and forwarding forms offer, for a user who may use them."""
    case, office = view.case, view.office
    if view.can_route:
        view.provinces = list(session.scalars(select(Office).where(Office.kind == OfficeKind.PROVINCE)))
        if case.province_code:
            view.districts = list(
                session.scalars(
                    select(Office)
                    .where(Office.kind == OfficeKind.DISTRICT, Office.province_code == case.province_code)
                    .order_by(Office.code)
                )
            )
    if view.can_propose:
        view.action_people = action_staff(session, office.id)
        view.office_committees = list(
            session.scalars(
                select(Committee).where(Committee.office_id == office.id).order_by(Committee.name)
            )
        )
        if office.kind == OfficeKind.PROVINCE:
            view.child_offices = list(
                session.scalars(select(Office).where(Office.parent_id == office.id).order_by(Office.code))
            )


def _callback_view(session: Session, user: User, case: Case, view: CaseView) -> None:
    callback = session.scalar(select(Callback).where(Callback.case_id == case.id))
    if callback is None:
        return
    view.callback = callback
    view.callback_office = callbacks.holding_office(session, case, callback.office_id)
    view.callback_people = callbacks.responsible_users(session, view.callback_office)
    if callback.assignee_id is not None:
        view.callback_assignee = session.get(User, callback.assignee_id)
    if callback.closed_by is not None and callback.closed_by not in view.names:
        closer = session.get(User, callback.closed_by)
        if closer is not None:
            view.names[closer.id] = closer.display_name
    view.can_cancel_callback = callback.state in OPEN_CALLBACK_STATES and access.may_call_back(
        session, user, case
    )


def action_staff(session: Session, office_id: int) -> list[User]:
    """The people who are SC-Action of an office (by role, or as its SC-Operators and heads)."""
    return list(
        session.scalars(
            select(User)
            .join(RoleAssignment, RoleAssignment.user_id == User.id)
            .where(
                RoleAssignment.office_id == office_id,
                RoleAssignment.role.in_([Role.ACTION, Role.OPERATOR, Role.HEAD]),
                User.active,
            )
            .distinct()
            .order_by(User.display_name)
        )
    )


def route_target(session: Session, province_code: str, district_code: str) -> Office | None:
    """The office an agent chose: a district of the chosen province if one was given, else the province."""
    province = session.scalar(
        select(Office).where(Office.code == province_code, Office.kind == OfficeKind.PROVINCE)
    )
    if province is None:
        return None
    district_code = district_code.strip()
    if not district_code:
        return province
    return session.scalar(
        select(Office).where(
            Office.code == district_code, Office.kind == OfficeKind.DISTRICT, Office.parent_id == province.id
        )
    )


# ---- approvals and assignments --------------------------------------------------------------------------


@dataclass
class ProposalRow:
    proposal: ForwardingProposal
    case: Case
    office: Office
    proposer: str
    target: str  # a person's name, a committee's name, or the office (resolved to words by the template)
    target_office: Office | None


def approvals(session: Session, user: User) -> list[ProposalRow]:
    """The forwarding proposals waiting for this head's decision."""
    return proposal_rows(session, workflow.proposals_awaiting(session, user))


def proposal_rows(session: Session, proposals: list[ForwardingProposal]) -> list[ProposalRow]:
    rows = []
    for p in proposals:
        case = session.get(Case, p.case_id)
        office = session.get(Office, p.office_id)
        proposer = session.get(User, p.proposed_by)
        assert case is not None and office is not None and proposer is not None
        target, target_office = "", None
        if p.to_user_id:
            person = session.get(User, p.to_user_id)
            target = person.display_name if person else ""
        elif p.to_committee_id:
            committee = session.get(Committee, p.to_committee_id)
            target = committee.name if committee else ""
        elif p.to_office_id:
            target_office = session.get(Office, p.to_office_id)
        rows.append(ProposalRow(p, case, office, proposer.display_name, target, target_office))
    return rows


@dataclass
class AssignmentRow:
    assignment: Assignment
    case: Case
    committee: Committee | None
    acknowledged: bool


def my_assignments(session: Session, user: User) -> list[AssignmentRow]:
    """Open cases assigned to the user or to a committee they sit on, oldest assignment first."""
    committees = select(CommitteeMember.committee_id).where(CommitteeMember.user_id == user.id)
    rows = session.execute(
        select(Assignment, Case)
        .join(Case, Case.id == Assignment.case_id)
        .where(
            Assignment.active,
            or_(Assignment.user_id == user.id, Assignment.committee_id.in_(committees)),
            Case.status != CaseStatus.RESOLVED,
        )
        .order_by(Assignment.assigned_at, Assignment.id)
    ).all()
    acked = set(
        session.scalars(
            select(Acknowledgement.assignment_id).where(
                Acknowledgement.user_id == user.id,
                Acknowledgement.assignment_id.in_([a.id for a, _c in rows]),
            )
        )
    )
    out = []
    for assignment, case in rows:
        committee = session.get(Committee, assignment.committee_id) if assignment.committee_id else None
        out.append(AssignmentRow(assignment, case, committee, assignment.id in acked))
    return out


# ---- offices, staff and committees ----------------------------------------------------------------------


@dataclass
class StaffMember:
    user: User
    roles: list[Role]


@dataclass
class CommitteeView:
    committee: Committee
    members: list[User]


@dataclass
class OfficeStaff:
    office: Office
    parent: Office | None
    staff: list[StaffMember]
    committees: list[CommitteeView]
    operators: int
    children: list[Office]


def office_staff(session: Session, office: Office) -> OfficeStaff:
    rows = session.execute(
        select(User, RoleAssignment.role)
        .join(RoleAssignment, RoleAssignment.user_id == User.id)
        .where(RoleAssignment.office_id == office.id)
        .order_by(User.display_name, User.id)
    ).all()
    by_user: dict[int, StaffMember] = {}
    for user, role in rows:
        by_user.setdefault(user.id, StaffMember(user, [])).roles.append(Role(role))
    for member in by_user.values():
        member.roles.sort(key=list(Role).index)
    committees = []
    for committee in session.scalars(
        select(Committee).where(Committee.office_id == office.id).order_by(Committee.name)
    ):
        members = list(
            session.scalars(
                select(User)
                .join(CommitteeMember, CommitteeMember.user_id == User.id)
                .where(CommitteeMember.committee_id == committee.id)
                .order_by(User.display_name)
            )
        )
        committees.append(CommitteeView(committee, members))
    operators = sum(1 for m in by_user.values() if {Role.OPERATOR, Role.HEAD} & set(m.roles))
    parent = session.get(Office, office.parent_id) if office.parent_id else None
    children = (
        list(session.scalars(select(Office).where(Office.parent_id == office.id).order_by(Office.code)))
        if office.kind == OfficeKind.PROVINCE
        else []
    )
    return OfficeStaff(office, parent, list(by_user.values()), committees, operators, children)


def my_offices(session: Session, user: User) -> list[Office]:
    """The offices where the user holds a role, central first."""
    return list(
        session.scalars(
            select(Office)
            .where(Office.id.in_(select(RoleAssignment.office_id).where(RoleAssignment.user_id == user.id)))
            .order_by(Office.code != CENTRAL_OFFICE_CODE, Office.code)
        )
    )


def offices_with_staff(session: Session, parent: Office) -> list[tuple[Office, int]]:
    """An office's children and how many SC-Operators each has (for the fewer-than-two warning)."""
    counts = dict(
        session.execute(
            select(RoleAssignment.office_id, func.count(func.distinct(RoleAssignment.user_id)))
            .join(Office, Office.id == RoleAssignment.office_id)
            .where(Office.parent_id == parent.id, RoleAssignment.role.in_([Role.OPERATOR, Role.HEAD]))
            .group_by(RoleAssignment.office_id)
        ).all()
    )
    children = session.scalars(select(Office).where(Office.parent_id == parent.id).order_by(Office.code))
    return [(o, counts.get(o.id, 0)) for o in children]


def user_by_username(session: Session, username: str) -> User | None:
    return session.scalar(select(User).where(User.username == username.strip().lower()))
