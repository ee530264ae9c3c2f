"""Finding cases: by reference, by a number's last digits (keyed hashes) and by words of their texts.

Every search is limited to the cases the user may see (cases.access.visibility), newest first, a page
at a time, counting at most MAX_RESULTS matches. What the index holds, and when it is written, is
cases.search_index.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from sqlalchemy import ColumnElement, func, literal_column, or_, select
from sqlalchemy import text as sql_text
from sqlalchemy.orm import Session, joinedload

from cases.access import visibility
from cases.models import Call, Case, SearchText
from cases.reference import LENGTH
from cases.search_index import DIGITS, index_words
from cases.staff import User
from infra.crypto import DataKeyError, FieldCipher

PER_PAGE = 20
# Matches counted at most: a common word matches thousands of cases, and counting them all would cost
# more than the page itself. Past this the page says "more than" and asks for another word.
MAX_RESULTS = 200
MAX_QUERY = 200  # characters of a word search kept (and segmented)
MAX_WORDS = 12  # words of a query matched; the rest are dropped
# A longer tail of digits is checked by decrypting the cases whose last 4 digits match: at most this many
# (about 10 per 100,000 cases for one key; more would mean something is wrong, not a bigger page).
MAX_CANDIDATES = 2_000


@dataclass
class Found:
    """A page of results: the cases, how many matched in all, which page of how many."""

    cases: list[Case] = field(default_factory=list)
    total: int = 0  # at most MAX_RESULTS
    page: int = 1
    per_page: int = PER_PAGE
    more: bool = False  # more than MAX_RESULTS matched

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.per_page))


def as_reference(query: str) -> str | None:
    """'1234-5678', '1234 5678' or '12345678' -> '12345678'; None when it is not 8 digits."""
    compact = "".join(query.split()).replace("-", "")
    return compact if len(compact) == LENGTH and compact.isdigit() else None


def as_digits(query: str) -> str | None:
    """The digits of a number typed with spaces, dashes or a leading +; None unless DIGITS or more."""
    kept = "".join(ch for ch in query if ch not in " -+()")
    return kept if len(kept) >= DIGITS and kept.isdigit() else None


def _page(session: Session, user: User, where: ColumnElement[bool], page: int, per_page: int) -> Found:
    scope = visibility(session, user)
    matched = select(Case.id).where(where, scope).limit(MAX_RESULTS + 1).subquery()
    total = session.scalar(select(func.count()).select_from(matched)) or 0
    more, total = total > MAX_RESULTS, min(total, MAX_RESULTS)
    page = max(1, min(page, math.ceil(total / per_page) or 1))
    cases = session.scalars(
        select(Case)
        .options(joinedload(Case.office))
        .where(where, scope)
        # Newest first by id (cases are numbered as they are opened): SQLite then walks the matched ids
        # in order and stops at the page, where ordering by created_at read and sorted every match.
        .order_by(Case.id.desc())
        .limit(max(0, min(per_page, total - (page - 1) * per_page)))  # not past the counted ones
        .offset((page - 1) * per_page)
    ).all()
    return Found(list(cases), total, page, per_page, more)


def by_reference(session: Session, user: User, reference: str) -> Found:
    return _page(session, user, Case.reference == reference, 1, PER_PAGE)


def by_digits(
    session: Session, user: User, cipher: FieldCipher, digits: str, page: int = 1, per_page: int = PER_PAGE
) -> Found:
    """Cases whose callback number or calling number ends in `digits` (DIGITS or more).

    The last DIGITS digits are matched by their keyed hash under each configured key (indexed); with more
    digits, only those candidates are decrypted to compare the rest.
    """
    digits = "".join(ch for ch in digits if ch.isdigit())
    if len(digits) < DIGITS:
        return Found(per_page=per_page)
    hashes = cipher.digits_hashes(digits[-DIGITS:])
    where = or_(Case.callback_digits_hash.in_(hashes), Case.caller_digits_hash.in_(hashes))
    if len(digits) == DIGITS:
        return _page(session, user, where, page, per_page)
    rows = session.execute(
        select(Case.id, Case.callback_number_enc, Call.caller_number_enc)
        .outerjoin(Call, Call.id == Case.call_id)
        .where(where, visibility(session, user))
        .limit(MAX_CANDIDATES)
    ).all()
    ids = [row[0] for row in rows if any(_ends_with(cipher, token, digits) for token in row[1:])]
    return _page(session, user, Case.id.in_(ids), page, per_page)


def _ends_with(cipher: FieldCipher, token: str | None, digits: str) -> bool:
    if not token:
        return False
    try:
        number = cipher.decrypt(token)
    except DataKeyError:
        return False
    return "".join(ch for ch in number if ch.isdigit()).endswith(digits)


# Digits (with spaces, dashes or dots between them) that look like part of a phone number.
_NUMBER_LIKE = re.compile(rf"\d(?:[\s.\-]?\d){{{DIGITS},}}")


def holds_number(query: str) -> bool:
    """Whether a query holds DIGITS+1 or more digits in a row (a phone number, not a word or a year)."""
    return _NUMBER_LIKE.search(query) is not None


def query_words(query: str) -> list[str]:
    """A query's words, split as the index was (Thai segmented by newmm), at most MAX_WORDS."""
    return index_words(query[:MAX_QUERY], "th").split()[:MAX_WORDS]


_FTS_ROWIDS = "SELECT rowid FROM search_fts WHERE search_fts MATCH :match"  # FTS_TABLE
# The same expression as migration 0013's GIN index. As an array (one initplan), not IN: with IN, the
# planner merged the whole case table, walked backwards and filtered by office, with the text test
# row by row (0.2-1 s at 100,000 cases for one office); the array is found by the index, then its cases.
_PG_MATCHED = (
    "ARRAY(SELECT case_id FROM search_texts "
    "WHERE to_tsvector('simple', words) @@ plainto_tsquery('simple', :words))"
)


def _text_match(session: Session, words: list[str]) -> ColumnElement[bool]:
    """Cases with a text holding every one of `words`."""
    if session.get_bind().dialect.name == "sqlite":
        # FTS5 query syntax: each word a quoted string (a quote doubled), all of them required.
        match = " AND ".join('"' + word.replace('"', '""') + '"' for word in words)
        rowids = sql_text(_FTS_ROWIDS).bindparams(match=match).columns(literal_column("rowid"))
        return Case.id.in_(select(SearchText.case_id).where(SearchText.id.in_(rowids)))
    matched = sql_text(_PG_MATCHED).bindparams(words=" ".join(words))
    return Case.id == func.any(matched)


def by_words(session: Session, user: User, query: str, page: int = 1, per_page: int = PER_PAGE) -> Found:
    """Cases whose summary, transcript or corrected transcript has every word of `query`."""
    words = query_words(query)
    if not words:
        return Found(per_page=per_page)
    return _page(session, user, _text_match(session, words), page, per_page)
