"""The docs hold together: every relative link in README.md and docs/ resolves (the file, and for
``#anchor`` a heading of that file under GitHub's anchor rules), every ``docs/x.md, "Heading"``
citation in the code names a real section, and no code cites the "notes X.Y" document, which is
not in the repository."""
import glob
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = ["README.md"] + sorted(os.path.relpath(p, ROOT)
                               for p in glob.glob(os.path.join(ROOT, "docs", "*.md")))
FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.S | re.M)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def anchor(heading):
    """GitHub's anchor of a heading: lower case, punctuation other than ``-`` and ``_`` dropped,
    each space a hyphen (markup such as backticks counts as punctuation)."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def headings(text):
    """The headings of a Markdown text, outside code blocks (a ``# comment`` in a snippet is
    not one)."""
    return [m.group(1) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*\s*$", FENCE.sub("", text), re.M)]


def anchors(text):
    """Every anchor GitHub gives the headings, repeats numbered ``-1``, ``-2``, ... as it does."""
    seen, out = {}, set()
    for heading in headings(text):
        base = anchor(heading)
        count = seen.get(base, 0)
        out.add(base if count == 0 else f"{base}-{count}")
        seen[base] = count + 1
    return out


def broken_links(path, root=ROOT):
    """``(link, why)`` of each relative link of ``path`` (relative to ``root``) that does not
    resolve."""
    with open(os.path.join(root, path)) as f:
        text = f.read()
    bad = []
    for target in LINK.findall(FENCE.sub("", text)):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        file_part, _, fragment = target.partition("#")
        resolved = os.path.normpath(os.path.join(os.path.dirname(path), file_part)) \
            if file_part else path
        full = os.path.join(root, resolved)
        if not os.path.exists(full):
            bad.append((target, f"{resolved} does not exist"))
            continue
        if fragment:
            if not resolved.endswith(".md"):
                bad.append((target, f"an anchor into {resolved}, which is not Markdown"))
                continue
            with open(full) as f:
                if fragment not in anchors(f.read()):
                    bad.append((target, f"{resolved} has no heading with anchor #{fragment}"))
    return bad


def test_anchor_follows_githubs_rules():
    assert anchor("What `make demo` shows") == "what-make-demo-shows"
    assert anchor("The paper's inference column") == "the-papers-inference-column"
    assert anchor("Channel-level sparsity that runs faster (`fb_plus_channel`, `--shrink`, "
                  "LiteRT)") == ("channel-level-sparsity-that-runs-faster-fb_plus_channel---"
                                 "shrink-litert")
    assert anchors("# A\n## A\n```\n# A\n```\n### A\n") == {"a", "a-1", "a-2"}


def test_a_broken_link_is_found(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# Page A\n\n## Two words\n")
    (tmp_path / "README.md").write_text(
        "# Top\n[ok](docs/a.md#two-words) [ok](#top) [web](https://example.org/x#y)\n"
        "[gone](docs/b.md) [no heading](docs/a.md#three-words)\n"
        "```\n[in code](docs/c.md)\n```\n")
    bad = broken_links("README.md", root=str(tmp_path))
    assert [link for link, _ in bad] == ["docs/b.md", "docs/a.md#three-words"]


def test_the_docs_folder_exists_and_the_readme_links_every_page():
    assert len(PAGES) > 10
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    assert "make demo" in readme and "make test" in readme
    for page in PAGES[1:]:
        assert f"({page})" in readme, f"README.md does not link {page}"
    with open(os.path.join(ROOT, "docs", "README.md")) as f:
        index = f.read()
    for page in PAGES[1:]:
        name = os.path.basename(page)
        assert name == "README.md" or f"({name})" in index, f"docs/README.md does not list {name}"


@pytest.mark.parametrize("path", PAGES)
def test_every_relative_link_resolves(path):
    assert broken_links(path) == []


def test_the_side_by_side_placeholder_is_kept():
    with open(os.path.join(ROOT, "docs", "authors-code.md")) as f:
        assert "<!-- SIDE-BY-SIDE TABLE -->" in f.read()


def _code_texts():
    """``(path, text)`` of the code, configs and tests, comment markers of wrapped lines joined."""
    paths = []
    for top in ("birds_tf", "launch", "gin", "benchmarks", "tests"):
        for folder, _, names in os.walk(os.path.join(ROOT, top)):
            paths += [os.path.join(folder, n) for n in names if n.endswith((".py", ".gin"))]
    for path in sorted(paths):
        if os.path.basename(path) == "test_docs.py":
            continue
        with open(path) as f:
            text = re.sub(r"\n\s*#\s?", "\n", f.read())
        yield os.path.relpath(path, ROOT), " ".join(text.split())


def test_no_code_cites_the_notes_document():
    cited = [(path, m.group(0)) for path, text in _code_texts()
             for m in re.finditer(r"notes,? (?:section )?\d+(?:\.\d+)?", text)]
    assert cited == [], "cite a docs/ page section, the paper or the authors' code instead"


def test_every_docs_citation_names_a_real_section():
    checked = 0
    for path, text in _code_texts():
        for m in re.finditer(r'docs/([\w-]+\.md)(?:,\s*|\s*\()?(?:"([A-Za-z][^"]*)")?', text):
            page = os.path.join(ROOT, "docs", m.group(1))
            assert os.path.exists(page), f"{path} cites docs/{m.group(1)}, which does not exist"
            if m.group(2):
                with open(page) as f:
                    names = {re.sub(r"[`*]", "", h).lower() for h in headings(f.read())}
                name = m.group(2).lower()
                assert name in names, f"{path}: docs/{m.group(1)} has no section {name!r}"
            checked += 1
    assert checked >= 10
