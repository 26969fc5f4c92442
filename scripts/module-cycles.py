#!/usr/bin/env python3
"""Finds import cycles between the modules of a Rust crate.

    python3 scripts/module-cycles.py connector-sdk/src

Reads every `.rs` file under the `src/` directory given, maps each file to
its module path (following the `mod` declarations from each crate root:
`lib.rs`, `main.rs`, `bin/*.rs`, `bin/*/main.rs`), collects the references
between modules (`use crate::...`, `use super::...`, `use self::...`, and
`crate::x::...` or `super::x::...` paths in code), and prints every cycle: a
strongly connected component of more than one module, with one place each
of its references is made. Exits 1 if there is a cycle, 0 if not, 2 when it
cannot read the crate.

What counts:
- A node is a file: a parent module (`store/mod.rs`) and the files of its
  submodules (`store/redis.rs`) are distinct nodes. An inline module
  (`mod scripts { ... }`) belongs to the file it is written in.
- A name used through a re-export (`use crate::Store`, where the root says
  `pub use store::Store`) counts where it really lives, followed through
  every `use`, so a re-export cannot hide a cycle.
- Ignored: a module's references to itself and to its own submodules (a
  parent declares and re-exports its children); test code (`mod tests`,
  and any item under `#[cfg(test)]`, test-only modules included); comments,
  doc comments and string literals; references to other crates.

Python 3 standard library only.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field

Path = tuple[str, ...]  # ("crate", "store", "redis")
EXTERN = "<extern>"

# ---------------------------------------------------------------------------
# Lexing: comments and literal contents blanked, every offset kept.


def clean(text: str) -> str:
    """`text` with comments and the contents of string and char literals
    replaced by spaces (newlines kept), so offsets and lines still match."""
    out = list(text)
    n = len(text)

    def blank(start: int, end: int) -> None:
        for k in range(start, min(end, n)):
            if out[k] != "\n":
                out[k] = " "

    i = 0
    while i < n:
        rest = text[i : i + 2]
        starts_word = i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")
        if rest == "//":
            end = text.find("\n", i)
            end = n if end < 0 else end
            blank(i, end)
            i = end
        elif rest == "/*":
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            blank(i, j)
            i = j
        elif starts_word and (raw := re.match(r'b?r(#*)"', text[i : i + 260])):
            opening = i + raw.end()
            closing = text.find('"' + raw.group(1), opening)
            closing = n if closing < 0 else closing
            blank(opening, closing)
            i = closing + 1 + len(raw.group(1))
        elif text[i] == '"' or (starts_word and rest == 'b"'):
            opening = i + (2 if text[i] == "b" else 1)
            j = opening
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            blank(opening, j)
            i = j + 1
        elif text[i] == "'":
            # A char literal ('x', '\n', '\u{1F600}'), else a lifetime ('a).
            char = re.match(r"'(?:\\(?:u\{[0-9a-fA-F]+\}|x[0-9a-fA-F]{2}|.)|[^\\'\n])'", text[i : i + 12])
            if char:
                blank(i + 1, i + char.end() - 1)
                i += char.end()
            else:
                i += 1
        else:
            i += 1
    return "".join(out)


def matching_brace(text: str, open_at: int) -> int:
    """The offset just past the `}` closing the `{` at `open_at`."""
    depth = 0
    for j in range(open_at, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return j + 1
    return len(text)


def item_end(text: str, start: int) -> int:
    """The end of the item starting at `start`: past its block or its `;`."""
    depth = 0
    for j in range(start, len(text)):
        ch = text[j]
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == ";" and depth == 0:
            return j + 1
        elif ch == "{" and depth == 0:
            return matching_brace(text, j)
    return len(text)


def attribute_end(text: str, start: int) -> int:
    """The offset just past the attribute `#[...]` starting at `start`."""
    depth = 0
    for j in range(text.index("[", start), len(text)):
        if text[j] == "[":
            depth += 1
        elif text[j] == "]":
            depth -= 1
            if depth == 0:
                return j + 1
    return len(text)


MOD_DECL = re.compile(r"\b(?:pub(?:\s*\([^)]*\))?\s+)?mod\s+([A-Za-z_]\w*)\s*([;{])")
CFG_TEST = re.compile(r"#\s*\[\s*cfg\s*\(\s*test\s*\)\s*\]")


def test_spans(text: str) -> list[tuple[int, int]]:
    """Where the test code is: `mod tests` and the items under `#[cfg(test)]`."""
    spans = []
    for attr in CFG_TEST.finditer(text):
        item = attr.end()
        while further := re.match(r"\s*#\s*\[", text[item:]):
            item = attribute_end(text, item + further.start() + further.group().index("#"))
        spans.append((attr.start(), item_end(text, item)))
    for decl in MOD_DECL.finditer(text):
        if decl.group(1) == "tests":
            end = decl.end() if decl.group(2) == ";" else matching_brace(text, decl.end() - 1)
            spans.append((decl.start(), end))
    return spans


def inside(spans: list[tuple[int, int]], offset: int) -> bool:
    return any(start <= offset < end for start, end in spans)


def masked(text: str, spans: list[tuple[int, int]]) -> str:
    out = list(text)
    for start, end in spans:
        for k in range(start, min(end, len(out))):
            if out[k] != "\n":
                out[k] = " "
    return "".join(out)


# ---------------------------------------------------------------------------
# The module tree.


@dataclass
class Module:
    path: Path
    file: str
    text: str  # cleaned, test code blanked
    # Inline modules written in this file: (start, end, their path).
    inline: list[tuple[int, int, Path]] = field(default_factory=list)


def crate_roots(src: str) -> list[tuple[str, str]]:
    roots = [
        (os.path.join(src, file), label)
        for file, label in (("lib.rs", "crate"), ("main.rs", "main"))
        if os.path.isfile(os.path.join(src, file))
    ]
    bins = os.path.join(src, "bin")
    if os.path.isdir(bins):
        for entry in sorted(os.listdir(bins)):
            full = os.path.join(bins, entry)
            if entry.endswith(".rs") and os.path.isfile(full):
                roots.append((full, f"bin:{entry[:-3]}"))
            elif os.path.isfile(os.path.join(full, "main.rs")):
                roots.append((os.path.join(full, "main.rs"), f"bin:{entry}"))
    return roots


def build_tree(src: str) -> tuple[dict[Path, Module], list[str]]:
    modules: dict[Path, Module] = {}
    reached: set[str] = set()
    test_files: set[str] = set()
    notes: list[str] = []

    def declared_file(raw: str, file: str, directory: str, decl: re.Match) -> list[str]:
        # `#[path = "..."]` right before the declaration wins.
        before = raw[max(0, decl.start() - 200) : decl.start()]
        explicit = re.search(r'#\s*\[\s*path\s*=\s*"([^"]+)"\s*\]\s*(?:#\s*\[[^\]]*\]\s*)*$', before)
        if explicit:
            return [os.path.join(os.path.dirname(file), explicit.group(1))]
        name = decl.group(1)
        return [os.path.join(directory, f"{name}.rs"), os.path.join(directory, name, "mod.rs")]

    def visit(file: str, path: Path, owns_directory: bool) -> None:
        with open(file, encoding="utf-8") as f:
            raw = f.read()
        cleaned = clean(raw)
        spans = test_spans(cleaned)
        module = Module(path, file, masked(cleaned, spans))
        modules[path] = module
        reached.add(os.path.realpath(file))
        # lib.rs, main.rs and mod.rs keep their submodules beside them;
        # `foo.rs` keeps them in `foo/`.
        directory = os.path.dirname(file) if owns_directory else os.path.splitext(file)[0]
        enclosing: list[tuple[int, Path, str]] = []  # inline modules: (end, path, directory)
        for decl in MOD_DECL.finditer(cleaned):
            while enclosing and decl.start() >= enclosing[-1][0]:
                enclosing.pop()
            parent, parent_dir = (enclosing[-1][1], enclosing[-1][2]) if enclosing else (path, directory)
            name = decl.group(1)
            if decl.group(2) == "{":
                end = matching_brace(cleaned, decl.end() - 1)
                enclosing.append((end, parent + (name,), os.path.join(parent_dir, name)))
                if not inside(spans, decl.start()):
                    module.inline.append((decl.start(), end, parent + (name,)))
                continue
            candidates = declared_file(raw, file, parent_dir, decl)
            found = next((c for c in candidates if os.path.isfile(c)), None)
            if inside(spans, decl.start()):
                if found:
                    test_files.add(os.path.realpath(found))
                continue
            if found is None:
                notes.append(f"{file}: `mod {name};` has no file ({' or '.join(candidates)})")
                continue
            visit(found, parent + (name,), os.path.basename(found) == "mod.rs")

    for file, label in crate_roots(src):
        visit(file, (label,), True)

    for directory, _, files in os.walk(src):
        for name in sorted(files):
            full = os.path.realpath(os.path.join(directory, name))
            if name.endswith(".rs") and full not in reached and not under_tests(full, test_files):
                notes.append(f"{os.path.join(directory, name)}: in no module tree; ignored")
    return modules, notes


def under_tests(file: str, test_files: set[str]) -> bool:
    """True for a test-only module's file, or a file of its submodules."""
    for test in test_files:
        directory = os.path.dirname(test) if test.endswith("mod.rs") else os.path.splitext(test)[0]
        if file == test or file.startswith(directory + os.sep):
            return True
    return False


# ---------------------------------------------------------------------------
# References.

USE_STMT = re.compile(r"\buse\s+([^;]+);")
PATH_IN_CODE = re.compile(r"(?<![\w$:])((?:crate|super|self)(?:\s*::\s*[A-Za-z_]\w*)+)")


def use_tree_paths(tree: str) -> list[tuple[list[str], str | None]]:
    """The paths a use tree names, each with the name it binds (None for a
    glob or `as _`)."""
    tokens = re.findall(r"::|[{},*]|[A-Za-z_]\w*", tree)
    pos = 0

    def peek() -> str | None:
        return tokens[pos] if pos < len(tokens) else None

    def tree_at(prefix: list[str]) -> list[tuple[list[str], str | None]]:
        nonlocal pos
        segments = list(prefix)
        if peek() == "::":  # a leading `::` (`use ::std::...`)
            pos += 1
        while (tok := peek()) not in (None, "{", "*", ",", "}", "::", "as"):
            segments.append(tok)
            pos += 1
            if peek() != "::":
                break
            pos += 1
        if peek() == "{":
            pos += 1
            found = []
            while peek() not in (None, "}"):
                found.extend(tree_at(segments))
                if peek() == ",":
                    pos += 1
            pos += 1
            return found
        if peek() == "*":
            pos += 1
            return [(segments, None)]
        alias = None
        if peek() == "as":
            pos += 1
            alias = peek()
            pos += 1
        if segments and segments[-1] == "self":
            segments = segments[:-1]
        bound = alias or (segments[-1] if segments else None)
        return [(segments, None if bound == "_" else bound)]

    return tree_at([]) if tokens else []


def absolute(here: Path, segments: list[str], modules: set[Path]) -> Path | None:
    """`segments` as a path from a crate root; `(EXTERN, ...)` when they name
    another crate; None when they cannot be placed."""
    if not segments:
        return None
    head, rest = segments[0], segments[1:]
    if head == "crate":
        return here[:1] + tuple(rest)
    if head == "self":
        return here + tuple(rest)
    if head == "super":
        base = here[:-1]
        while rest and rest[0] == "super":
            base, rest = base[:-1], rest[1:]
        return base + tuple(rest) if base else None
    if here + (head,) in modules:  # `use child::X`
        return here + tuple(segments)
    return (EXTERN,) + tuple(segments)


@dataclass
class Crate:
    modules: dict[Path, Module]
    inline: set[Path]
    # (module, name it binds) -> the path it stands for.
    aliases: dict[tuple[Path, str], Path] = field(default_factory=dict)

    def is_module(self, path: Path) -> bool:
        return path in self.modules or path in self.inline

    def file_of(self, path: Path) -> Path:
        while path not in self.modules:
            path = path[:-1]
        return path

    def resolve(self, path: Path, hops: int = 0) -> Path | None:
        """The file module where what `path` names lives, through re-exports;
        None when it is in another crate."""
        if not path or path[0] == EXTERN or hops > 32:
            return None
        for cut in range(len(path), 0, -1):
            prefix = path[:cut]
            if not self.is_module(prefix):
                continue
            if cut < len(path):
                alias = self.aliases.get((prefix, path[cut]))
                if alias is not None and alias != path[: cut + 1]:
                    return self.resolve(alias + path[cut + 1 :], hops + 1)
            return self.file_of(prefix)
        return None


def module_at(module: Module, offset: int) -> Path:
    """The module at `offset` of `module`'s file, inline modules counted."""
    here = module.path
    for start, end, path in module.inline:
        if start <= offset < end and len(path) > len(here):
            here = path
    return here


def references(modules: dict[Path, Module]) -> dict[tuple[Path, Path], tuple[str, int]]:
    """Every reference from one file module to another, with where one is made."""
    inline = {path for m in modules.values() for _, _, path in m.inline}
    crate = Crate(modules, inline)
    known = set(modules) | inline
    found: list[tuple[Module, int, Path]] = []
    for module in modules.values():
        for stmt in USE_STMT.finditer(module.text):
            here = module_at(module, stmt.start())
            for segments, bound in use_tree_paths(stmt.group(1)):
                full = absolute(here, segments, known)
                if full is None:
                    continue
                if bound is not None:
                    crate.aliases[(here, bound)] = full
                found.append((module, stmt.start(), full))
        for ref in PATH_IN_CODE.finditer(module.text):
            if re.match(r"\s*::\s*\{", module.text[ref.end() :]):
                continue  # the head of a use tree: read above
            here = module_at(module, ref.start())
            full = absolute(here, re.split(r"\s*::\s*", ref.group(1)), known)
            if full is not None:
                found.append((module, ref.start(), full))

    edges: dict[tuple[Path, Path], tuple[str, int]] = {}
    for module, offset, full in found:
        target = crate.resolve(full)
        source = module.path
        if target is None or target[: len(source)] == source:
            continue  # another crate, itself, or one of its own submodules
        line = module.text.count("\n", 0, offset) + 1
        edges.setdefault((source, target), (module.file, line))
    return edges


# ---------------------------------------------------------------------------
# Cycles.


def components(nodes: list[Path], edges: list[tuple[Path, Path]]) -> list[list[Path]]:
    """The strongly connected components of more than one node (Tarjan)."""
    graph: dict[Path, list[Path]] = {node: [] for node in nodes}
    for source, target in edges:
        graph.setdefault(source, []).append(target)
        graph.setdefault(target, [])
    index: dict[Path, int] = {}
    low: dict[Path, int] = {}
    stack: list[Path] = []
    on_stack: set[Path] = set()
    found: list[list[Path]] = []

    def enter(node: Path) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)

    for start in sorted(graph):
        if start in index:
            continue
        enter(start)
        work = [(start, iter(sorted(graph[start])))]
        while work:
            node, successors = work[-1]
            descended = False
            for succ in successors:
                if succ not in index:
                    enter(succ)
                    work.append((succ, iter(sorted(graph[succ]))))
                    descended = True
                    break
                if succ in on_stack:
                    low[node] = min(low[node], index[succ])
            if descended:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def shown(path: Path) -> str:
    return "::".join(path)


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not os.path.isdir(argv[1]):
        print("usage: python3 scripts/module-cycles.py <crate>/src", file=sys.stderr)
        return 2
    src = os.path.normpath(argv[1])
    modules, notes = build_tree(src)
    if not modules:
        print(f"{src}: no crate root here (lib.rs, main.rs or bin/*.rs)", file=sys.stderr)
        return 2
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    edges = references(modules)
    cycles = components(sorted(modules), sorted(edges))
    print(f"{src}: {len(modules)} modules, {len(edges)} references between them")
    if not cycles:
        print("no cycle")
        return 0
    for number, members in enumerate(cycles, 1):
        print(f"cycle {number}: {', '.join(shown(m) for m in members)}")
        for (source, target), (file, line) in sorted(edges.items()):
            if source in members and target in members:
                print(f"  {shown(source)} -> {shown(target)}  ({file}:{line})")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
