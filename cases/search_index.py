"""What the console's search reads: written when numbers and texts are stored, removed when erased.

Numbers: the keyed hash of a number's last DIGITS digits (infra.crypto.FieldCipher.digits_hash), kept on
the case for its callback number and for the number that called; a search compares hashes and decrypts
only the few candidates (when more digits are asked for), never every number. The hash key is derived
from the data key: a search looks for the hash under every configured key, and `keys rotate` recomputes
the stored ones under the first (fill_digit_hashes), so hashes stay valid across a rotation.

Texts: each summary (the latest), machine transcript and latest correction is kept as its words, Thai
segmented by PyThaiNLP (cases.transcript_words) and lowercased, one space apart (SearchText). SQLite's
FTS5 table and PostgreSQL's GIN index over that column are made by migration 0015.
"""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from cases.models import Call, Case, SearchText
from cases.transcript_words import words
from infra.crypto import DataKeyError, FieldCipher
from infra.db import Database
from transcription.models import Recording, Transcript

DIGITS = 4  # how many last digits are hashed; a search needs at least this many
SUMMARY, TRANSCRIPT, CORRECTION = "summary", "transcript", "correction"
FTS_TABLE = "search_fts"  # SQLite: FTS5 over search_texts.words (external content, kept by triggers)
PG_INDEX = "ix_search_texts_tsv"  # PostgreSQL: GIN on to_tsvector('simple', words)
# What migration 0015 makes beside the models (a virtual table and its shadow tables, an expression
# index): the models-against-migrations comparison leaves them out.
UNMAPPED = frozenset(
    {
        FTS_TABLE,
        *(f"{FTS_TABLE}_{part}" for part in ("data", "idx", "content", "docsize", "config")),
        PG_INDEX,
    }
)
BATCH = 500


# ---- numbers -------------------------------------------------------------------------------------------


def last_digits(number: str | None) -> str | None:
    """The last DIGITS digits of a number, or None when it has fewer."""
    digits = "".join(ch for ch in number or "" if ch.isdigit())
    return digits[-DIGITS:] if len(digits) >= DIGITS else None


def digits_hash(cipher: FieldCipher, number: str | None) -> str | None:
    tail = last_digits(number)
    return cipher.digits_hash(tail) if tail else None


def set_number_hashes(case: Case, cipher: FieldCipher, callback: str | None, caller: str | None) -> None:
    """Called where a case's numbers are stored (cases.service.open_draft_case)."""
    case.callback_digits_hash = digits_hash(cipher, callback)
    case.caller_digits_hash = digits_hash(cipher, caller)


def clear_number_hashes(case: Case) -> None:
    """Called where the numbers are erased (retention): the hashes go with them."""
    case.callback_digits_hash = None
    case.caller_digits_hash = None


def decrypted(cipher: FieldCipher, token: str | None) -> str | None:
    if not token:
        return None
    try:
        return cipher.decrypt(token)
    except DataKeyError:
        return None  # a number no configured key opens: `keys rotate` reports it; it is not searchable


def _number_rows(db: Database, only_missing: bool) -> Iterator[list[tuple[int, str | None, str | None]]]:
    last = 0
    numbered = or_(Case.callback_number_enc.is_not(None), Call.caller_number_enc.is_not(None))
    missing = or_(
        Case.callback_number_enc.is_not(None) & Case.callback_digits_hash.is_(None),
        Call.caller_number_enc.is_not(None) & Case.caller_digits_hash.is_(None),
    )
    while True:
        with db.read_session() as session:
            stmt = (
                select(Case.id, Case.callback_number_enc, Call.caller_number_enc)
                .outerjoin(Call, Call.id == Case.call_id)
                .where(missing if only_missing else numbered, Case.id > last)
                .order_by(Case.id)
                .limit(BATCH)
            )
            rows = [(int(row[0]), row[1], row[2]) for row in session.execute(stmt)]
        if not rows:
            return
        last = rows[-1][0]
        yield rows


def fill_digit_hashes(db: Database, cipher: FieldCipher, *, only_missing: bool) -> int:
    """Write the hashes of the cases' numbers under the current key; how many cases changed.

    `db upgrade` runs it with only_missing (cases stored before the hashes existed: a migration has no
    key); `keys rotate` runs it over every case, after the numbers, so the stored hashes follow the
    first key. Batches commit on their own: a run stopped half-way is finished by running it again.
    """
    changed = 0
    for rows in _number_rows(db, only_missing):
        with db.session() as session:
            for case_id, callback_enc, caller_enc in rows:
                values = {
                    "callback_digits_hash": digits_hash(cipher, decrypted(cipher, callback_enc)),
                    "caller_digits_hash": digits_hash(cipher, decrypted(cipher, caller_enc)),
                }
                # The case's updated_at stays: a key change is not a change of the case.
                result = session.execute(
                    update(Case)
                    .where(
                        Case.id == case_id,
                        or_(
                            Case.callback_digits_hash.is_distinct_from(values["callback_digits_hash"]),
                            Case.caller_digits_hash.is_distinct_from(values["caller_digits_hash"]),
                        ),
                    )
                    .values(**values, updated_at=Case.updated_at)
                    .execution_options(synchronize_session=False)
                )
                changed += getattr(result, "rowcount", 0) or 0
    return changed


# ---- texts ---------------------------------------------------------------------------------------------


def index_words(text: str | None, language: str) -> str:
    """The words of `text` as the index keeps them (and as a search query is split): lowercased, no
    punctuation, one space apart; Thai segmented into words by newmm."""
    if not text or not text.strip():
        return ""
    kept = (w.lower() for w in words(text, language) if any(ch.isalnum() for ch in w))
    return " ".join(kept)


def put_text(
    session: Session, case_id: int, kind: str, source_id: int, text: str | None, language: str
) -> None:
    """Make (or replace) the searchable words of one text; an empty text leaves the index."""
    found = index_words(text, language)
    row = session.scalar(select(SearchText).where(SearchText.kind == kind, SearchText.source_id == source_id))
    if not found:
        if row is not None:
            session.delete(row)
    elif row is None:
        session.add(SearchText(case_id=case_id, kind=kind, source_id=source_id, words=found))
    else:
        row.case_id, row.words = case_id, found
    session.flush()


def forget_text(session: Session, kind: str, source_id: int) -> None:
    session.execute(delete(SearchText).where(SearchText.kind == kind, SearchText.source_id == source_id))


def forget_case(session: Session, case_id: int) -> None:
    """Every text of a case leaves the index (for an erasure of the case's words)."""
    session.execute(delete(SearchText).where(SearchText.case_id == case_id))


def index_summary(session: Session, case: Case) -> None:
    put_text(session, case.id, SUMMARY, case.id, case.summary, case.language)


def index_correction(session: Session, case: Case, recording_id: int, text: str) -> None:
    put_text(session, case.id, CORRECTION, recording_id, text, case.language)


def index_recording(session: Session, recording_id: int) -> None:
    """The machine transcript of a recording, once it has both a case and words (whichever comes last:
    the worker's transcript or the case's opening calls this)."""
    rec = session.get(Recording, recording_id)
    if rec is None or rec.case_id is None or rec.erased_at is not None:
        return
    transcript = session.scalar(select(Transcript).where(Transcript.recording_id == recording_id))
    if transcript is not None:
        put_text(session, rec.case_id, TRANSCRIPT, rec.id, transcript.text, transcript.language)


def on_transcript(session: Session, transcript: Transcript) -> None:
    """The transcription worker's hook (handed in by app.py): a finished transcript is indexed."""
    index_recording(session, transcript.recording_id)
