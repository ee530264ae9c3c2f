"""The automated accessibility check of the browser tests: axe-core (from the npm registry) run in the page.

`./hotline test` installs axe-core with npm into the virtualenv (`$VENV/node`); HOTLINE_AXE_JS names the
file when it lies elsewhere. The script is evaluated through the DevTools protocol, so the console's strict
CSP (no inline script) stays on while it runs: the pages are checked as served.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

from playwright.sync_api import Page

AXE_VERSION = "4.14.1"  # the version `./hotline test` installs
REPO = Path(__file__).resolve().parents[2]
DEFAULT_AXE_JS = REPO / ".venv" / "node" / "node_modules" / "axe-core" / "axe.min.js"

RUN = """async () => {
    const result = await axe.run(document, {resultTypes: ['violations']});
    return result.violations.map((v) => ({
        id: v.id, impact: v.impact, help: v.help,
        nodes: v.nodes.slice(0, 5).map((n) => ({target: n.target.join(' '), summary: n.failureSummary})),
    }));
}"""


@cache
def axe_source() -> str:
    path = Path(os.environ.get("HOTLINE_AXE_JS") or DEFAULT_AXE_JS)
    assert path.is_file(), (
        f"axe-core is not installed at {path}: run ./hotline test once, or "
        f"npm install --prefix .venv/node axe-core@{AXE_VERSION}"
    )
    return path.read_text(encoding="utf-8")


def violations(page: Page) -> list[dict[str, object]]:
    """axe-core's violations on the page as it is now (every rule axe runs by default: WCAG 2 A/AA, more)."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(axe_source())
    found = page.evaluate(RUN)
    assert isinstance(found, list)
    return found


def describe(found: list[dict[str, object]]) -> str:
    """One line per rule broken, then the elements (up to five) and what is wrong with each."""
    return "\n".join(
        f"- {v['id']} ({v['impact']}): {v['help']}\n"
        + "\n".join(f"    {n['target']}: {n['summary']}" for n in v["nodes"])  # type: ignore[attr-defined]
        for v in found
    )


def assert_accessible(page: Page, where: str = "") -> None:
    """Fail the test on any axe-core violation, naming the rule, the elements and what is wrong."""
    found = violations(page)
    assert not found, f"axe-core on {where or page.url}:\n" + describe(found)
