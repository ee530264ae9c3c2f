"""Offices of the Safety Center: central, 77 provincial and 928 district offices, from geothai."""

from __future__ import annotations

from dataclasses import dataclass

import geothai
from sqlalchemy import select
from sqlalchemy.orm import Session

from cases.models import CENTRAL_OFFICE_CODE, Office, OfficeKind

BANGKOK = "10"


@dataclass(frozen=True)
class LoadReport:
    created: int
    updated: int
    total: int


def _wanted() -> list[tuple[str, OfficeKind, str, str, str | None, str | None]]:
    """(code, kind, name_th, name_en, province_code, parent_code) for every office."""
    rows: list[tuple[str, OfficeKind, str, str, str | None, str | None]] = [
        (
            CENTRAL_OFFICE_CODE,
            OfficeKind.CENTRAL,
            "ศูนย์ความปลอดภัย สำนักงาน กศน.",
            "Safety Center, Office of Non-Formal and Informal Education",
            None,
            None,
        )
    ]
    for p in geothai.provinces():
        if p.code == BANGKOK:
            name_th, name_en = "สำนักงาน กศน. กทม.", "ONIE Bangkok Office"
        else:
            name_th, name_en = f"สำนักงาน กศน. จังหวัด{p.name_th}", f"ONIE {p.name_en} Provincial Office"
        rows.append((p.code, OfficeKind.PROVINCE, name_th, name_en, p.code, CENTRAL_OFFICE_CODE))
        for d in geothai.districts(p.code):
            # Bangkok's districts are เขต and geothai already names them so; elsewhere อำเภอ.
            th = f"กศน. {d.name_th}" if p.code == BANGKOK else f"กศน. อำเภอ{d.name_th}"
            rows.append((d.code, OfficeKind.DISTRICT, th, f"ONIE {d.name_en} District", p.code, p.code))
    return rows


def load_offices(session: Session) -> LoadReport:
    """Create or update every office; running it again changes nothing. Flushes, never commits."""
    existing = {o.code: o for o in session.scalars(select(Office))}
    created = updated = 0
    for code, kind, name_th, name_en, province_code, _parent in _wanted():
        office = existing.get(code)
        if office is None:
            office = Office(
                code=code, kind=kind, name_th=name_th, name_en=name_en, province_code=province_code
            )
            session.add(office)
            existing[code] = office
            created += 1
        elif (office.kind, office.name_th, office.name_en, office.province_code) != (
            kind,
            name_th,
            name_en,
            province_code,
        ):
            office.kind, office.name_th, office.name_en = kind, name_th, name_en
            office.province_code = province_code
            updated += 1
    session.flush()
    for code, _kind, _th, _en, _prov, parent_code in _wanted():
        parent_id = existing[parent_code].id if parent_code else None
        if existing[code].parent_id != parent_id:
            existing[code].parent_id = parent_id
    session.flush()
    return LoadReport(created=created, updated=updated, total=len(existing))


class OfficesNotLoaded(RuntimeError):
    """The offices table is empty: run `flask --app app offices load`."""


def office_for_province(session: Session, province_code: str | None) -> Office:
    """The province's office, or the central Safety Center when no (known) province was given."""
    if province_code:
        office = session.scalar(select(Office).where(Office.code == province_code))
        if office is not None:
            return office
    central = central_office(session)
    if central is None:
        raise OfficesNotLoaded("no central office: run `flask --app app offices load`")
    return central


def central_office_id(session: Session) -> int | None:
    """The central Safety Center's id, looked up once per session (the reminder sweep asks per draft).

    None while the offices are not loaded; only a found id is remembered.
    """
    cached: int | None = session.info.get("central_office_id")
    if cached is None:
        cached = session.scalar(select(Office.id).where(Office.code == CENTRAL_OFFICE_CODE))
        if cached is not None:
            session.info["central_office_id"] = cached
    return cached


def central_office(session: Session) -> Office | None:
    """The central Safety Center (the call centre's office), or None while the offices are not loaded."""
    office_id = central_office_id(session)
    return session.get(Office, office_id) if office_id is not None else None
