"""Every relative link in README.md and docs/*.md leads somewhere: the file exists and, for a
`#anchor`, a heading of that file has that anchor (GitHub's rule: lower case, punctuation
dropped, spaces to hyphens). The README is a newcomer's first screen; a dead link there is a
dead end."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*$", re.M)
FENCE = re.compile(r"^```.*?^```", re.M | re.S)


def anchor(heading: str) -> str:
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {anchor(h) for h in HEADING.findall(FENCE.sub("", path.read_text(encoding="utf-8")))}


def links(path: Path) -> list[str]:
    return [t for t in LINK.findall(FENCE.sub("", path.read_text(encoding="utf-8"))) if "://" not in t]


def test_anchor_follows_githubs_rule() -> None:
    assert anchor("`simulate`: carbon against wait") == "simulate-carbon-against-wait"
    assert anchor("The reference grid: one figure, 536.6 g/kWh") == "the-reference-grid-one-figure-5366-gkwh"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page: Path) -> None:
    dead = []
    for target in links(page):
        file, _, frag = target.partition("#")
        dest = (page.parent / file).resolve() if file else page
        if not dest.exists():
            dead.append(
                f"{target}: no such file {dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest}"
            )
        elif frag and dest.suffix == ".md" and frag not in anchors(dest):
            dead.append(f"{target}: no heading with anchor #{frag} in {dest.relative_to(ROOT)}")
    assert not dead, f"{page.relative_to(ROOT)}: dead links:\n" + "\n".join(dead)

