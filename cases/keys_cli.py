"""`flask --app app keys rotate`: re-encrypt numbers and recordings under the first configured keys."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import click

from cases.keys import RotationReport, Stall, rotate_numbers, rotate_recordings, rotate_sealed_files
from infra.crypto import FieldCipher
from infra.db import Database
from infra.sealed import RecordingCipher

# A step over files another layer owns (telephony's spool keeps numbers under HOTLINE_DATA_KEY).
FileStep = Callable[[FieldCipher, RotationReport, Callable[[str], None]], None]


def keys_group(
    database: Callable[[], Database],
    ciphers: Callable[[], tuple[FieldCipher, RecordingCipher]],
    data_dir: Callable[[], Path],
    number_files: Sequence[FileStep] = (),
) -> click.Group:
    @click.group("keys")
    def group() -> None:
        """The keys of personal data at rest (HOTLINE_DATA_KEY, HOTLINE_RECORDING_KEY)."""

    @group.command("rotate")
    @click.option("--only", type=click.Choice(["numbers", "recordings"]), help="Rotate one kind only.")
    def rotate(only: str | None) -> None:
        """Re-encrypt every number and recording under the first key of each variable, in batches:
        the database's numbers, the spool's, the recordings and every other sealed file in the data dir.

        Safe to stop and run again: what is already under the first key is skipped. Once it ends with
        nothing failed, the older keys can be removed from the variables.
        """
        cipher, sealer = ciphers()
        report = RotationReport()
        stall = Stall.from_env(os.environ, click.echo)
        if only in (None, "numbers"):
            rotate_numbers(database(), cipher, report, click.echo, stall)
            for step in number_files:
                step(cipher, report, click.echo)
        if only in (None, "recordings"):
            rotate_recordings(database(), sealer, report, click.echo, stall=stall)
            rotate_sealed_files(data_dir(), sealer, report, click.echo)
        for line in report.failed:
            click.echo(f"  {line}", err=True)
        done, current = sum(report.done.values()), sum(report.current.values())
        click.echo(
            f"keys rotate: {done} re-encrypted, {current} already current, {len(report.failed)} failed"
        )
        sys.exit(1 if report.failed else 0)

    return group


def seal_plain_recordings(database: Database, sealer: RecordingCipher) -> str:
    """Seal the recordings stored as plain audio before sealing existed (run by `db upgrade`)."""
    report = RotationReport()
    rotate_recordings(database, sealer, report, lambda _line: None, plain_only=True)
    failed = "".join(f"\n  {line}" for line in report.failed)
    return f"recordings: {report.done.get('recordings', 0)} plain ones sealed{failed}"
