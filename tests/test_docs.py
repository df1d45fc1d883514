"""README.md stays a page a newcomer reads (under 15,000 bytes) and leads into docs/: every docs/ page is linked from
it, and every relative link in it and in docs/*.md leads to a file of this repository. The reference is the file
system: a link's target resolved against its page's folder, as GitHub and any Markdown viewer resolve it."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)[^)]*\)")  # [text](target) or [text](target "title")
CODE = re.compile(r"```.*?```|`[^`\n]*`", re.S)  # inside code a [..](..) is text, not a link


def links(page: Path) -> list[str]:
    """The relative link targets of a Markdown page, anchors dropped; web and in-page links left out."""
    text = CODE.sub("", page.read_text())
    targets = [m.group(1) for m in LINK.finditer(text)]
    return [t.split("#")[0] for t in targets if "://" not in t and not t.startswith(("#", "mailto:"))]


def broken_links(page: Path, root: Path = ROOT) -> list[str]:
    """Targets that are missing, or outside root (a clone has no ../shared)."""
    return [t for t in links(page)
            if not (target := (page.parent / t).resolve()).exists() or not target.is_relative_to(root)]


def test_readme_is_under_15000_bytes():
    assert len(README.read_bytes()) < 15_000


def test_every_relative_link_of_the_readme_and_docs_leads_to_a_file_here():
    assert DOCS, "no docs/*.md"
    broken = {page.relative_to(ROOT).as_posix(): bad for page in [README, *DOCS] if (bad := broken_links(page))}
    assert not broken


def test_the_readme_links_every_docs_page():
    linked = {(README.parent / t).resolve() for t in links(README)}
    assert [p.name for p in DOCS if p.resolve() not in linked] == []


def test_broken_links_finds_missing_and_outside_targets_only(tmp_path):
    root = tmp_path / "repo"
    (root / "docs").mkdir(parents=True)
    (root / "docs/there.md").write_text("")
    (tmp_path / "outside.md").write_text("")
    page = root / "docs/page.md"
    page.write_text("[ok](there.md) [ok, anchored](there.md#a-section) [up](../docs/there.md) [web](https://x.org/y.md)\n"
                    "[in page](#top) [missing](gone.md) [outside](../../outside.md) `[code](gone-too.md)`\n"
                    "```\n[fenced](gone-three.md)\n```\n[titled missing](nope.md \"a title\")\n")
    assert broken_links(page, root) == ["gone.md", "../../outside.md", "nope.md"]
