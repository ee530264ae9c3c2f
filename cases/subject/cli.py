"""`flask --app app subject erase|export`: a reporter's erasure and access requests, from the shell.

The shell is trusted like a database console: one person runs `erase` (the console asks two admins).
Errors are one line each (unknown reference, held case, bad path), with exit status 1.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import click
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cases.reference import display_reference
from cases.retention.sweep import RetentionSweep
from cases.staff import User
from cases.subject.erase import SubjectError, erase_subject, reference_of
from cases.subject.export import ExportOptions, export_subject
from infra.clock import utcnow
from infra.crypto import FieldCipher
from infra.db import Database
from infra.sealed import RecordingCipher


def _actor(session: Session, email: str | None) -> User | None:
    if email is None:
        return None
    user = session.scalar(select(User).where(func.lower(User.email) == email.strip().lower()))
    if user is None or not user.active:
        raise click.ClickException(f"no active staff account has the e-mail {email!r}")
    return user


def export_target(path: Path, data_dir: Path) -> Path:
    """Where the zip goes: a new file, in an existing folder, outside the data dir (the zip holds plain
    audio, and the data dir is for sealed recordings only)."""
    target = path.expanduser().resolve()
    if target.exists():
        raise click.ClickException(f"{path} already exists: give the path of a new file")
    if not target.parent.is_dir():
        raise click.ClickException(f"{target.parent} is not a folder")
    if target.is_relative_to(data_dir.resolve()):
        raise click.ClickException(
            f"{path} is inside the data dir (HOTLINE_DATA_DIR): write the zip elsewhere"
        )
    return target


def subject_group(
    database: Callable[[], Database],
    ciphers: Callable[[], tuple[FieldCipher, RecordingCipher]],
    sweep: Callable[[], RetentionSweep],
    data_dir: Callable[[], Path],
) -> click.Group:
    @click.group("subject")
    def group() -> None:
        """A reporter's requests about their report: erasure and access (README "Erasure and access")."""

    @group.command("erase")
    @click.argument("reference")
    @click.option("--reason", required=True, help="Who asked, when and how (kept in the audit row).")
    @click.option("--actor", "actor_email", required=True, help="The e-mail of the staff member doing it.")
    def erase_cmd(reference: str, reason: str, actor_email: str) -> None:
        """Erase the reporter's number, recordings, transcripts and free text; the handling record stays."""
        with database().session() as session:
            actor = _actor(session, actor_email)
            actor_id = actor.id if actor else None
        try:
            erased, report = erase_subject(
                database(), reference, actor_id=actor_id, reason=reason, sweep=sweep(), now=utcnow()
            )
        except SubjectError as exc:
            raise click.ClickException(str(exc)) from None
        shown = display_reference(reference_of(reference))
        parts = ", ".join(erased.parts) or "nothing left to erase"
        click.echo(f"subject erase {shown}: {parts}; {report.summary()}")
        for line in report.faults:
            click.echo(f"  {line} (the nightly retention sweep tries again)", err=True)
        if report.faults:
            raise SystemExit(1)

    @group.command("export")
    @click.argument("reference")
    @click.argument("path", type=click.Path(path_type=Path, dir_okay=False))
    @click.option("--verified", is_flag=True, help="A verified request: the reporter's number is unmasked.")
    @click.option("--reason", default="", help="Why (required with --verified; kept in the audit row).")
    @click.option("--actor", "actor_email", default=None, help="The e-mail of the staff member doing it.")
    def export_cmd(reference: str, path: Path, verified: bool, reason: str, actor_email: str | None) -> None:
        """Write what the service holds about the case as a zip with a manifest (PATH: a new file)."""
        target = export_target(path, data_dir())
        cipher, sealer = ciphers()
        options = ExportOptions(cipher, sealer, verified=verified, reason=reason)
        part = target.with_name(target.name + ".part")
        try:
            out = part.open("xb")
        except FileExistsError:
            raise click.ClickException(f"{part} exists: another export to {path} is running") from None
        try:
            with out, database().writing() as session:
                actor = _actor(session, actor_email)
                manifest = export_subject(
                    session, reference, out, options, actor_id=actor.id if actor else None, now=utcnow()
                )
            os.replace(part, target)  # the zip appears whole, and only once its audit row is committed
        except SubjectError as exc:
            raise click.ClickException(str(exc)) from None
        finally:
            part.unlink(missing_ok=True)
        masked = "number unmasked (verified request)" if verified else "number masked"
        shown = display_reference(reference_of(reference))
        click.echo(f"subject export {shown}: {len(manifest.files)} files, {masked} -> {target}")

    return group
