"""Where a gunicorn worker's time went: buckets of a py-spy "raw" profile (collapsed stacks).

    .venv/bin/python bench/webhooks.py --mode capacity --py-spy /tmp/ivr.txt --py-spy-idle
    .venv/bin/python bench/pyspy_summary.py /tmp/ivr.txt

A ``.txt`` output of ``--py-spy`` is py-spy's raw format: one ``frame;frame;...;leaf count`` line per
distinct stack. Recorded with ``--py-spy-idle`` the samples cover wall time (waiting included); without it,
only time on the CPU. Each sample goes to the first bucket below that matches: first the "waits", which
are recognised anywhere in the stack, then the leaf-most frame's library.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from collections.abc import Sequence

# (bucket, pattern): matched against any frame of the stack, in this order.
WAITS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("sqlite: BEGIN IMMEDIATE (waiting for the write lock)", re.compile(r"_on_begin \(infra/db\.py")),
    ("db: COMMIT", re.compile(r"do_commit \(sqlalchemy/engine/default\.py")),
    ("gunicorn: close_graceful (waiting for the client to close)", re.compile(r"close_graceful \(gunicorn")),
    ("gunicorn: waiting for a request (idle)", re.compile(r"\b(wait|select|poll) \((gunicorn|selectors)")),
    ("gunicorn: access log", re.compile(r"\(gunicorn/glogging\.py")),
)
# (bucket, pattern): matched against frames from the leaf up; the first frame that matches decides.
LIBRARIES: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "db: execute (other statements; on PostgreSQL: waiting for the server)",
        re.compile(r"do_execute \(sqlalchemy"),
    ),
    ("sqlalchemy (ORM, compiling, flush)", re.compile(r"\(sqlalchemy/")),
    ("ivr engine (telephony/engine.py, flow.py)", re.compile(r"\(telephony/(engine|flow)\.py")),
    (
        "twiml rendering (twilio.twiml, telephony/twiml.py)",
        re.compile(r"\((twilio/twiml|telephony/twiml\.py)"),
    ),
    (
        "signature check (twilio RequestValidator)",
        re.compile(r"\((twilio/request_validator|telephony/signature)"),
    ),
    ("encryption (cryptography, infra/crypto.py)", re.compile(r"\((cryptography/|infra/crypto\.py)")),
    ("phonenumbers", re.compile(r"\(phonenumbers/")),
    ("json", re.compile(r"\(json/")),
    ("logging", re.compile(r"\(logging/")),
    (
        "product code (telephony, cases, infra, transcription)",
        re.compile(r"\((telephony|cases|infra|transcription)/"),
    ),
    ("flask / werkzeug", re.compile(r"\((flask|werkzeug)/")),
    ("gunicorn: socket write", re.compile(r"write \(gunicorn/util\.py")),
    ("gunicorn (accept, parse, respond)", re.compile(r"\(gunicorn/")),
)


IDLE_THREAD = "gunicorn: idle thread (no request to work on)"
IDLE_BUCKETS = frozenset({IDLE_THREAD, "gunicorn: waiting for a request (idle)"})


def bucket(frames: Sequence[str]) -> str:
    if frames and re.search(r"_worker \(concurrent/futures/thread\.py", frames[-1]):
        return IDLE_THREAD  # a gthread worker's pool thread blocked on its queue
    for name, pattern in WAITS:
        if any(pattern.search(f) for f in frames):
            return name
    for frame in reversed(frames):
        for name, pattern in LIBRARIES:
            if pattern.search(frame):
                return name
    return "other"


def summarise(lines: Sequence[str]) -> tuple[Counter[str], int]:
    counts: Counter[str] = Counter()
    total = 0
    for line in lines:
        stack, _, n = line.rstrip("\n").rpartition(" ")
        if not stack or not n.isdigit():
            continue
        counts[bucket(stack.split(";"))] += int(n)
        total += int(n)
    return counts, total


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Bucket a py-spy raw profile of a gunicorn worker.")
    p.add_argument("profile", help="py-spy record --format raw output")
    args = p.parse_args(argv)
    with open(args.profile, encoding="utf-8", errors="replace") as fh:
        counts, total = summarise(fh.readlines())
    if not total:
        print("no samples", file=sys.stderr)
        return 1
    busy = total - sum(counts[b] for b in IDLE_BUCKETS)
    print(f"{total} samples, {busy} of them handling a request; % of all, % of busy")
    for name, n in counts.most_common():
        of_busy = "" if name in IDLE_BUCKETS or not busy else f"{100 * n / busy:6.1f}%"
        print(f"{100 * n / total:6.1f}%  {of_busy:>7}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
