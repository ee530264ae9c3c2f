"""The console's search page: a case by reference or by words (GET), or by a number's last digits (POST).

A reference or words may sit in the URL. Digits of a reporter's number never do: that search is a POST
form with its CSRF token, its pages are POSTs too, and each one leaves an audit row (a sensitive look-up)
that records how many digits were asked and how many cases were found, never the digits.
"""

from __future__ import annotations

from flask import Blueprint, Flask, render_template, request
from werkzeug.wrappers import Response

from cases import search
from console.audit import note_read
from console.base import cipher, db, me, reader, require_login
from console.i18n import _

bp = Blueprint("search", __name__, url_prefix="/console/search")
bp.before_request(require_login)
MAX_DIGITS = 20  # a number's digits: anything longer is not a phone number


def _page_arg(value: str | None) -> int:
    return int(value) if value and value.isdigit() and len(value) < 7 else 1


def _render(found: search.Found | None, *, query: str = "", digits: str = "", note: str = "") -> str:
    return render_template(
        "console/search.html", nav="queue", found=found, query=query, digits=digits, note=note
    )


@bp.get("/")
def search_page() -> str:
    """Reference (with or without the dash) or words; digits alone never search here (not in a URL)."""
    query = request.args.get("q", "")[: search.MAX_QUERY].strip()
    if not query:
        return _render(None)
    page = _page_arg(request.args.get("page"))
    reference = search.as_reference(query)
    if reference is not None:
        return _render(search.by_reference(reader(), me(), reference), query=query)
    if search.as_digits(query) is not None or search.holds_number(query):
        # Not looked up: the number form (POST) keeps digits out of addresses, histories and logs.
        return _render(None, note=_("To find a case by phone number, use the phone number form below."))
    return _render(search.by_words(reader(), me(), query, page), query=query)


@bp.post("/number")
def search_number() -> str | Response:
    """The last digits (4 or more) of the callback or calling number; the look-up is audited."""
    digits = search.as_digits(request.form.get("digits", "")[:MAX_DIGITS])
    if digits is None:
        return _render(None, note=_("Type at least the last 4 digits of the number."))
    found = search.by_digits(reader(), me(), cipher(), digits, _page_arg(request.form.get("page")))
    note_read("search_by_number", None, {"digits": len(digits), "found": found.total, "page": found.page})
    db().commit()
    return _render(found, digits=digits)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
