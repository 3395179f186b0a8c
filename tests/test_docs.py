"""The front page and the documentation pages: every relative link resolves inside the repository, the README
stays a front page, and the test command CI runs is where `.ci/run` reads it. (CI also builds the site with
`mkdocs build --strict`, which checks the links between pages again and renders the API reference.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def relative_links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # links in code blocks are code
    return [t for t in LINK.findall(text) if not re.match(r"[a-z]+:|#", t)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves(page: Path) -> None:
    missing = [t for t in relative_links(page) if not (page.parent / t.split("#")[0]).exists()]
    assert not missing, f"{page.relative_to(REPO)} links to missing files: {missing}"


def test_the_link_check_finds_a_missing_file(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("[a](there.md) [b](https://example.org) [c](#anchor)\n```\n[d](in-code.md)\n```\n")
    assert relative_links(page) == ["there.md"]


def test_readme_is_a_front_page() -> None:
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 250
    for word in ("previous release", "issue", "DESIGN", "notes/"):
        assert word not in text, f"internal wording in the README: {word!r}"
    command = re.search(r"<!-- test-command -->\n```bash\n(.+?)\n```\n<!-- /test-command -->", text, re.S)
    assert command is not None and "python -m pytest" in command.group(1)
    for name in ("LICENSE", "CITATION.cff", "CHANGELOG.md", "mkdocs.yml"):
        assert (REPO / name).is_file(), name
