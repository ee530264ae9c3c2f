"""audit trail: summary versions, append-only audit, event and version rows

Every summary is kept as a version (the summaries written so far are copied in as the first one, with
the author of their last "summarised" event). Triggers on PostgreSQL and SQLite refuse UPDATE and
DELETE (and TRUNCATE on PostgreSQL) on audit_events, case_events, call_events, summary_versions and
transcript_corrections, unless the transaction holds a row of append_only_unlocks (cases.audit.unlocked,
for a future retention or erasure path that audits itself). No code updated or deleted these rows
before this migration.

SQLite drops a table's triggers with the table: a later migration that rebuilds one of these tables
(batch_alter_table with recreate) must create its triggers again; tests/integration/test_append_only.py
checks them at head.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 15:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APPEND_ONLY = ("audit_events", "case_events", "call_events", "summary_versions", "transcript_corrections")

PG_FUNCTION = """
CREATE FUNCTION hotline_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'TRUNCATE' AND EXISTS (SELECT 1 FROM append_only_unlocks) THEN
        IF TG_OP = 'DELETE' THEN
            RETURN OLD;
        END IF;
        RETURN NEW;
    END IF;
    RAISE EXCEPTION '% on % refused: its rows are append-only', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'restrict_violation';
END
$$
"""


def _create_triggers(dialect: str) -> None:
    if dialect == "postgresql":
        op.execute(PG_FUNCTION)
        for table in APPEND_ONLY:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION hotline_append_only()"
            )
            op.execute(
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION hotline_append_only()"
            )
        return
    for table in APPEND_ONLY:
        for verb in ("UPDATE", "DELETE"):
            # RAISE(ABORT): SQLITE_CONSTRAINT, an IntegrityError as restrict_violation is on PostgreSQL.
            message = f"{verb} on {table} refused: its rows are append-only"
            op.execute(
                f"CREATE TRIGGER {table}_append_only_{verb.lower()} BEFORE {verb} ON {table} "  # noqa: S608
                "WHEN NOT EXISTS (SELECT 1 FROM append_only_unlocks) "
                f"BEGIN SELECT RAISE(ABORT, '{message}'); END"
            )


def _drop_triggers(dialect: str) -> None:
    for table in APPEND_ONLY:
        if dialect == "postgresql":
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
        else:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only_update")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only_delete")
    if dialect == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS hotline_append_only()")


def upgrade() -> None:
    op.create_table(
        "summary_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("category", sa.String(length=24), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], name=op.f("fk_summary_versions_case_id_cases")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_summary_versions_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_summary_versions")),
    )
    with op.batch_alter_table("summary_versions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_summary_versions_case_id"), ["case_id"], unique=False)
    op.create_table(
        "append_only_unlocks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("purpose", sa.String(length=80), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("must_close", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["must_close"],
            ["append_only_unlocks.id"],
            name=op.f("fk_append_only_unlocks_must_close_append_only_unlocks"),
            initially="DEFERRED",
            deferrable=True,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_append_only_unlocks")),
    )
    op.execute(
        "INSERT INTO summary_versions (case_id, user_id, at, text, category) "
        "SELECT c.id, "
        "(SELECT e.actor_id FROM case_events e WHERE e.case_id = c.id AND e.action = 'summarised' "
        "ORDER BY e.id DESC LIMIT 1), "
        "COALESCE((SELECT e.at FROM case_events e WHERE e.case_id = c.id AND e.action = 'summarised' "
        "ORDER BY e.id DESC LIMIT 1), c.updated_at), "
        "c.summary, c.category FROM cases c WHERE c.summary IS NOT NULL"
    )
    _create_triggers(op.get_bind().dialect.name)


def downgrade() -> None:
    _drop_triggers(op.get_bind().dialect.name)
    op.drop_table("append_only_unlocks")
    with op.batch_alter_table("summary_versions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_summary_versions_case_id"))
    op.drop_table("summary_versions")
