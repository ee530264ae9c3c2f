"""recording storage, callbacks and transcripts

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 06:19:15.042196
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "recording_callbacks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("recording_sid", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recording_callbacks")),
        sa.UniqueConstraint(
            "recording_sid", "status", name=op.f("uq_recording_callbacks_recording_sid_status")
        ),
    )
    op.create_table(
        "transcripts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("recording_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=True),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("claimed_by", sa.String(length=64), nullable=True),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("words", sa.JSON(), nullable=True),
        sa.Column("mean_confidence", sa.Float(), nullable=True),
        sa.Column("engine", sa.String(length=32), nullable=True),
        sa.Column("model_id", sa.String(length=120), nullable=True),
        sa.Column("upsampled_from", sa.Integer(), nullable=True),
        sa.Column("audio_duration_s", sa.Float(), nullable=True),
        sa.Column("processing_ms", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["recording_id"], ["recordings.id"], name=op.f("fk_transcripts_recording_id_recordings")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transcripts")),
        sa.UniqueConstraint("recording_id", name=op.f("uq_transcripts_recording_id")),
    )
    with op.batch_alter_table("transcripts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_transcripts_status"), ["status"], unique=False)

    with op.batch_alter_table("recordings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("language", sa.String(length=8), nullable=True))
        batch_op.add_column(
            sa.Column("storage_status", sa.String(length=16), nullable=False, server_default="pending")
        )
        batch_op.add_column(sa.Column("stored_path", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("sha256", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("size_bytes", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("audio_duration_s", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("download_attempts", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("last_error", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("claimed_by", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("deleted_at_twilio", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f("ix_recordings_storage_status"), ["storage_status"], unique=False)
        batch_op.drop_column("transcript_text")
        batch_op.drop_column("transcript_status")


def downgrade() -> None:
    with op.batch_alter_table("recordings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("transcript_status", sa.VARCHAR(length=24), nullable=True))
        batch_op.add_column(sa.Column("transcript_text", sa.TEXT(), nullable=True))
        batch_op.drop_index(batch_op.f("ix_recordings_storage_status"))
        batch_op.drop_column("deleted_at_twilio")
        batch_op.drop_column("claimed_by")
        batch_op.drop_column("claimed_until")
        batch_op.drop_column("last_error")
        batch_op.drop_column("next_attempt_at")
        batch_op.drop_column("download_attempts")
        batch_op.drop_column("audio_duration_s")
        batch_op.drop_column("size_bytes")
        batch_op.drop_column("sha256")
        batch_op.drop_column("stored_path")
        batch_op.drop_column("storage_status")
        batch_op.drop_column("language")

    with op.batch_alter_table("transcripts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_transcripts_status"))

    op.drop_table("transcripts")
    op.drop_table("recording_callbacks")
