"""verified staff phones, and the number each bridge attempt rang

A staff phone is used only once a code sent to it was keyed back: users.phone_verified_at (NULL for every
phone set before, so each must be verified again), phone_verifications (the pending codes, hashed, the
number encrypted), and callback_attempts.operator_number_enc (the number the bridge rang, encrypted) with
an index for the per-user rate limit.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 15:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Existing phones stay, unverified: the console asks their owners to verify them.
    op.add_column("users", sa.Column("phone_verified_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "phone_verifications",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("number_enc", sa.Text(), nullable=False),
        sa.Column("number_masked", sa.String(length=32), nullable=False),
        sa.Column("code_salt", sa.String(length=32), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("tries", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_phone_verifications_user_id", "phone_verifications", ["user_id"])
    op.create_index("ix_phone_verifications_created_at", "phone_verifications", ["created_at"])
    op.add_column("callback_attempts", sa.Column("operator_number_enc", sa.Text(), nullable=True))
    op.create_index(
        "ix_callback_attempts_operator_started", "callback_attempts", ["operator_id", "started_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_callback_attempts_operator_started", table_name="callback_attempts")
    with op.batch_alter_table("callback_attempts") as batch_op:
        batch_op.drop_column("operator_number_enc")
    op.drop_index("ix_phone_verifications_created_at", table_name="phone_verifications")
    op.drop_index("ix_phone_verifications_user_id", table_name="phone_verifications")
    op.drop_table("phone_verifications")
    with op.batch_alter_table("users") as batch_op:
        batch_op.drop_column("phone_verified_at")
