"""search: number-digit hashes on cases, and the cases' texts as words for full-text search

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03 18:20:00

SQLite: an FTS5 table over search_texts.words (external content), kept in step by triggers.
PostgreSQL: a GIN index on to_tsvector('simple', words). The existing summaries, machine transcripts
and latest corrections are indexed here; the number hashes need the data key, which a migration does
not have: `db upgrade` makes them after the migrations (cases.search_index.fill_digit_hashes).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FTS = "search_fts"
PG_INDEX = "ix_search_texts_tsv"
_SQLITE_TRIGGERS = {
    "search_texts_ai": "AFTER INSERT ON search_texts BEGIN "
    "INSERT INTO search_fts(rowid, words) VALUES (new.id, new.words); END",
    "search_texts_ad": "AFTER DELETE ON search_texts BEGIN "
    "INSERT INTO search_fts(search_fts, rowid, words) VALUES ('delete', old.id, old.words); END",
    "search_texts_au": "AFTER UPDATE ON search_texts BEGIN "
    "INSERT INTO search_fts(search_fts, rowid, words) VALUES ('delete', old.id, old.words); "
    "INSERT INTO search_fts(rowid, words) VALUES (new.id, new.words); END",
}


def upgrade() -> None:
    # Plain ADD COLUMNs: a batch rebuild of `cases` would drop a table other tables' keys point at.
    op.add_column("cases", sa.Column("callback_digits_hash", sa.String(length=64), nullable=True))
    op.add_column("cases", sa.Column("caller_digits_hash", sa.String(length=64), nullable=True))
    op.create_index("ix_cases_callback_digits_hash", "cases", ["callback_digits_hash"])
    op.create_index("ix_cases_caller_digits_hash", "cases", ["caller_digits_hash"])
    op.create_table(
        "search_texts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("source_id", sa.Integer(), nullable=False),
        sa.Column("words", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("kind", "source_id"),
    )
    op.create_index("ix_search_texts_case_id", "search_texts", ["case_id"])
    if op.get_bind().dialect.name == "sqlite":
        # unicode61 keeps Thai vowel and tone marks (remove_diacritics 0): a word is matched as written.
        op.execute(
            f"CREATE VIRTUAL TABLE {FTS} USING fts5(words, content='search_texts', content_rowid='id', "
            "tokenize='unicode61 remove_diacritics 0')"
        )
        for name, body in _SQLITE_TRIGGERS.items():
            op.execute(f"CREATE TRIGGER {name} {body}")
    else:
        op.execute(f"CREATE INDEX {PG_INDEX} ON search_texts USING gin (to_tsvector('simple', words))")
    _backfill()


# Each text kind's rows (case, source id, text, language): summaries, machine transcripts of recordings
# not erased, and the latest correction of each recording.
_SOURCES = {
    "summary": "SELECT id, id, summary, language FROM cases WHERE summary IS NOT NULL",
    "transcript": "SELECT r.case_id, r.id, t.text, t.language FROM transcripts t "
    "JOIN recordings r ON r.id = t.recording_id "
    "WHERE r.case_id IS NOT NULL AND r.erased_at IS NULL AND t.text IS NOT NULL",
    "correction": "SELECT c.case_id, c.recording_id, c.text, k.language FROM transcript_corrections c "
    "JOIN cases k ON k.id = c.case_id "
    "WHERE c.id IN (SELECT MAX(id) FROM transcript_corrections GROUP BY recording_id)",
}


def _backfill() -> None:
    """Index the texts stored before this revision, segmented exactly as the app does at write time."""
    # App code in a migration, on purpose: the index must hold the words the app's searches split into.
    from cases.search_index import index_words

    bind = op.get_bind()
    insert = sa.text(
        "INSERT INTO search_texts (case_id, kind, source_id, words) "
        "VALUES (:case_id, :kind, :source_id, :words)"
    )
    for kind, query in _SOURCES.items():
        values = [
            {"case_id": case_id, "kind": kind, "source_id": source_id, "words": index_words(text, language)}
            for case_id, source_id, text, language in bind.execute(sa.text(query))
        ]
        values = [v for v in values if v["words"]]
        if values:
            bind.execute(insert, values)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in _SQLITE_TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        op.execute(f"DROP TABLE IF EXISTS {FTS}")
    else:
        op.execute(f"DROP INDEX IF EXISTS {PG_INDEX}")
    op.drop_index("ix_search_texts_case_id", table_name="search_texts")
    op.drop_table("search_texts")
    op.drop_index("ix_cases_caller_digits_hash", table_name="cases")
    op.drop_index("ix_cases_callback_digits_hash", table_name="cases")
    op.drop_column("cases", "caller_digits_hash")
    op.drop_column("cases", "callback_digits_hash")
