#!/usr/bin/env python3
"""Checks the relative links of the README and docs/: every file a link
names exists, and every #anchor matches a heading of the file it points at.

    python3 scripts/doc-links.py [FILE.md ...]

With no arguments it checks README.md, BENCHMARKS.md and docs/*.md, and also
that every docs/*.md is linked from the README (each deep dive has its
summary there). Exits 1 naming each broken link, 0 when all resolve.

Anchors follow GitHub's rules: the heading's text without its markup,
lowercased, punctuation dropped, spaces to '-', a repeated heading suffixed
-1, -2...; an explicit <a id="..."> (or name=) counts too. Links inside code
(fenced blocks, `spans`) are not links. Absolute URLs are not checked: no
network. Python 3 standard library only.
"""

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)[ \t]*#*[ \t]*$")
HTML_ANCHOR = re.compile(r"""<a\s[^>]*?\b(?:id|name)\s*=\s*["']([^"']+)["']""", re.I)
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
# [text](target) and ![alt](target); the text may hold one level of [brackets].
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*(<[^>]*>|[^()\s]+)(?:\s+\"[^\"]*\")?\s*\)")
# [label]: target, at the start of a line.
REFERENCE_DEF = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
GITHUB_LINE = re.compile(r"^L\d+(-L\d+)?$")


def prose_lines(text):
    """(line number, line) for each line outside fenced code blocks."""
    fence = None
    for number, line in enumerate(text.splitlines(), 1):
        match = FENCE.match(line)
        if fence:
            if match and match.group(1)[0] == fence[0] and len(match.group(1)) >= len(fence):
                fence = None
            continue
        if match:
            fence = match.group(1)
            continue
        yield number, line


def slug(heading):
    """GitHub's anchor for a heading's text."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link: its text
    text = re.sub(r"<[^>]+>", "", text)  # html tags
    text = text.lower()
    text = re.sub(r"[^\w\- ]", "", text)  # punctuation (\w keeps letters of any script, digits, _)
    return text.replace(" ", "-")


def anchors(path, cache={}):
    """Every anchor of a markdown file."""
    if path not in cache:
        found, seen = set(), {}
        for _, line in prose_lines(path.read_text(encoding="utf-8")):
            found.update(HTML_ANCHOR.findall(line))
            match = HEADING.match(line)
            if match:
                base = slug(match.group(2))
                count = seen.get(base, 0)
                seen[base] = count + 1
                found.add(base if count == 0 else f"{base}-{count}")
        cache[path] = found
    return cache[path]


def links(path):
    """(line number, target) for each link of a markdown file."""
    for number, line in prose_lines(path.read_text(encoding="utf-8")):
        definition = REFERENCE_DEF.match(line)
        if definition:
            yield number, definition.group(1).strip("<>")
            continue
        line = CODE_SPAN.sub("", line)
        for match in INLINE_LINK.finditer(line):
            yield number, match.group(1).strip("<>")


def check(path):
    """The problems of one file's links, as printable lines."""
    problems = []
    shown = path.relative_to(ROOT)
    for number, target in links(path):
        if SCHEME.match(target) or target.startswith("//"):
            continue  # absolute: http(s), mailto...
        file_part, _, anchor = target.partition("#")
        where = f"{shown}:{number}: {target}"
        dest = (path.parent / file_part).resolve() if file_part else path
        if ROOT != dest and ROOT not in dest.parents:
            problems.append(f"{where}: points outside the repository")
            continue
        if not dest.exists():
            problems.append(f"{where}: no such file {dest.relative_to(ROOT)}")
            continue
        if not anchor:
            continue
        if dest.suffix.lower() == ".md":
            if anchor not in anchors(dest):
                problems.append(f"{where}: no heading with anchor #{anchor} in {dest.relative_to(ROOT)}")
        elif not (dest.is_file() and GITHUB_LINE.match(anchor)):
            problems.append(f"{where}: #{anchor} cannot be checked in {dest.relative_to(ROOT)}")
    return problems


def unlinked_docs(readme):
    """The docs/*.md that the README does not link to."""
    linked = set()
    for _, target in links(readme):
        file_part = target.partition("#")[0]
        if file_part and not SCHEME.match(file_part):
            linked.add((readme.parent / file_part).resolve())
    return [
        f"{doc.relative_to(ROOT)}: not linked from README.md (give it a summary there)"
        for doc in sorted((ROOT / "docs").glob("*.md"))
        if doc.resolve() not in linked
    ]


def main(args):
    if args:
        files = [Path(arg).resolve() for arg in args]
        problems = []
    else:
        readme = ROOT / "README.md"
        files = [readme, ROOT / "BENCHMARKS.md", *sorted((ROOT / "docs").glob("*.md"))]
        problems = unlinked_docs(readme)
    missing = [f for f in files if not f.is_file()]
    problems.extend(f"{f}: no such file" for f in missing)
    files = [f for f in files if f.is_file() and ROOT in f.parents]
    for path in files:
        problems.extend(check(path))
    for problem in problems:
        print(problem, file=sys.stderr)
    count = sum(1 for path in files for _ in links(path))
    if problems:
        print(f"doc-links: {len(problems)} broken of {count} links in {len(files)} files", file=sys.stderr)
        return 1
    print(f"doc-links: {count} links in {len(files)} files, all resolve")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
