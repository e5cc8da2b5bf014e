"""axe-core in a watched page: the script to inject (the pages' CSP forbids inline scripts,
so it goes in as an init script) and the serious or critical violations it finds."""

from __future__ import annotations

from typing import Any

from tests.support.node import node_modules


def axe_script() -> str:
    """axe-core's script, for ``open_page(init_script=...)``."""
    return (node_modules("axe-core") / "axe-core" / "axe.min.js").read_text()


def serious_violations(page: Any) -> list[str]:
    """What axe finds serious or critical on the page as it is: rule, impact, help and up to
    three of the nodes."""
    result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    return [f"{v['id']} ({v['impact']}): {v['help']} — {[n['target'] for n in v['nodes']][:3]}"
            for v in result["violations"] if v["impact"] in ("serious", "critical")]
