"""What one run of a sweep did: its outcomes counted, and every fault it met in words safe to print."""

from __future__ import annotations

import threading
from collections.abc import Iterable


class SweepReport:
    """Filled by a sweep as it goes (from several threads at once), read by `worker --once`.

    A fault is one line naming the row and the reason already stored on it (no personal data: the same
    words an admin sees in the console). Any fault makes `worker --once` exit non-zero.
    """

    def __init__(self, outcomes: Iterable[str] = ()) -> None:
        # Outcomes named up front are always printed, "0 stored" included: a sweep that did nothing says so.
        self.counts: dict[str, int] = dict.fromkeys(outcomes, 0)
        self.faults: list[str] = []
        self._lock = threading.Lock()

    def expect(self, *outcomes: str) -> None:
        """Outcomes to print even at 0 (a sweep that has a natural "0 stored, 0 failed")."""
        with self._lock:
            for outcome in outcomes:
                self.counts.setdefault(outcome, 0)

    def count(self, outcome: str, n: int = 1) -> None:
        with self._lock:
            self.counts[outcome] = self.counts.get(outcome, 0) + n

    def fault(self, outcome: str, line: str) -> None:
        """Count `outcome` and keep the fault's line (e.g. "recording 12: cannot write /x (…)")."""
        with self._lock:
            self.counts[outcome] = self.counts.get(outcome, 0) + 1
            self.faults.append(line)

    def summary(self) -> str:
        with self._lock:
            return ", ".join(f"{n} {outcome}" for outcome, n in self.counts.items()) or "nothing to do"
