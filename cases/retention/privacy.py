"""The privacy page's facts for office admins: the periods, the next and last purge, their held cases.

Nothing here writes, and nothing personal is read: the periods come from the retention file, the last
purge is counts only (cases.models.RetentionRun), and a held case is shown by its reference, office,
since when and by whom (its reason and content stay on the case's own page, where reading is audited).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from cases.models import Case, Office, RetentionRun
from cases.notifications import overseen_office_ids
from cases.retention.settings import RetentionSettings
from cases.retention.sweep import last_run
from cases.staff import Role, User


@dataclass(frozen=True)
class HeldCase:
    case: Case
    office: Office | None
    held_by: User | None


@dataclass(frozen=True)
class PrivacyOverview:
    settings: RetentionSettings
    next_sweep: datetime  # in the service's time zone
    last_run: RetentionRun | None  # the last sweep that finished (every office's counts together)
    held: list[HeldCase]  # newest hold first


def privacy_overview(
    session: Session, user: User, settings: RetentionSettings, now: datetime, zone: ZoneInfo
) -> PrivacyOverview | None:
    """What an office admin sees; None for anyone who administers no office (the page refuses them)."""
    offices = overseen_office_ids(session, user, (Role.ADMIN,))  # None: the central office's admins
    if offices is not None and not offices:
        return None
    query = (
        select(Case, Office, User)
        .outerjoin(Office, Office.id == Case.office_id)
        .outerjoin(User, User.id == Case.legal_hold_by)
        .where(Case.legal_hold_at.is_not(None))
        .order_by(Case.legal_hold_at.desc(), Case.id.desc())
    )
    if offices is not None:
        query = query.where(Case.office_id.in_(offices))
    held = [HeldCase(case, office, by) for case, office, by in session.execute(query)]
    return PrivacyOverview(settings, settings.next_sweep(now, zone), last_run(session), held)
