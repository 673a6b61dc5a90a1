"""The README stays short and its links lead somewhere (the documentation site's own links are checked by
``mkdocs build --strict`` in ``make test``)."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def test_readme_is_a_five_minute_read():
    assert 150 <= len(README.splitlines()) <= 250


def test_readme_starts_with_the_two_set_up_commands():
    first_block = README.split("```bash", 1)[1].split("```", 1)[0]
    assert [line.split()[:2] for line in first_block.strip().splitlines()] == [["make", "demo"], ["make", "test"]]


def test_readme_relative_links_exist():
    headings = {
        re.sub(r"[^\w\- ]", "", h.lower()).strip().replace(" ", "-") for h in re.findall(r"^#+ (.+)$", README, re.M)
    }
    for target in re.findall(r"\]\(([^)\s]+)\)", README):
        if re.match(r"^[a-z]+://", target):
            continue
        if target.startswith("#"):
            assert target[1:] in headings, target
        else:
            assert (REPO / target.split("#")[0]).exists(), target
