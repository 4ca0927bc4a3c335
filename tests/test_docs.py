"""The README and docs/ stay a short guide whose links lead somewhere, and the project stands alone."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_LIMIT = 15_000


LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def relative_links(page: Path) -> list[str]:
    """Markdown link targets of ``page`` outside code blocks, web addresses left out."""
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    return [target for target in LINK.findall(text) if not re.match(r"[a-z]+:", target)]


def heading_anchors(page: Path) -> set[str]:
    """GitHub's anchors for the headings of ``page``: lower case, punctuation dropped, spaces to '-'."""
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    headings = re.findall(r"^#+\s+(.*)$", text, re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-") for heading in headings}


def test_readme_is_a_short_guide():
    size = len((ROOT / "README.md").read_text(encoding="utf-8"))
    assert size < README_LIMIT, f"README.md has {size} characters: move detail to docs/"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_relative_links_resolve(page: Path):
    broken = []
    for target in relative_links(page):
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            broken.append(target)
        elif anchor and resolved.suffix == ".md" and anchor not in heading_anchors(resolved):
            broken.append(target)
    assert not broken, f"{page.name} links to what does not exist: {broken}"


def test_every_docs_page_is_linked_from_the_readme():
    linked = {target.partition("#")[0] for target in relative_links(ROOT / "README.md")}
    unlinked = [page.name for page in PAGES[1:] if f"docs/{page.name}" not in linked]
    assert not unlinked, f"README.md does not link {unlinked}"


def test_code_and_docs_cite_nothing_outside_the_repository():
    files = [*PAGES, ROOT / "benchmarks" / "NOTES.md", *(ROOT / "src").rglob("*.py")]
    citing = [str(path.relative_to(ROOT)) for path in files if re.search(r"SPEC\.md|\.\./shared", path.read_text(encoding="utf-8"))]
    assert not citing, f"these cite files the project does not have: {citing}"
