"""Which source file of a Rust crate imports which, and the circles among them.

A file imports another when it names an item of the other's module: a `use`
(with brace groups expanded), an inline `crate::…`/`super::…` path, or an inline
`child::…` path to a module this file declares. Declaring
a child (`mod x;`) is not an import, so a parent and the tests it declares are
no circle. `#[path = "…"] mod x;` is followed. Run as a script to print the
circles of each crate: `python3 e2e/structure/import_graph.py operator/src`.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

MOD_DECL = re.compile(r'(?:#\[path\s*=\s*"([^"]+)"\]\s*)?(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;')
USE = re.compile(r'\buse\s+([^;]+);', re.S)
INLINE = re.compile(r'\b((?:crate|super|self)(?:::\w+)+)')
# `child::item` in code, where `child` is a module declared in this file.
RELATIVE = re.compile(r'(?<![\w:])([a-z_][a-z0-9_]*(?:::\w+)+)')
# One pass, so `//` inside a string is not a comment and `"` in a comment no string.
LEXEMES = re.compile(r'\br(#*)".*?"\1|"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])\'|//[^\n]*|/\*.*?\*/', re.S)


def code_only(text: str) -> str:
    """Strings and char literals emptied, comments removed."""
    return LEXEMES.sub(lambda m: '""' if m.group(0)[0] in "r\"'" else "", text)


def modules(root_file: Path) -> dict[tuple[str, ...], Path]:
    """Module path → file, walking `mod` declarations from the crate root."""
    found: dict[tuple[str, ...], Path] = {}

    def walk(path: tuple[str, ...], file: Path) -> None:
        found[path] = file
        text = code_only(file.read_text())
        own_dir = file.parent if file.name in ("mod.rs", "lib.rs", "main.rs") else file.with_suffix("")
        for explicit, name in MOD_DECL.findall(text):
            if explicit:
                child = file.parent / explicit
            elif (own_dir / f"{name}.rs").exists():
                child = own_dir / f"{name}.rs"
            else:
                child = own_dir / name / "mod.rs"
            if child.exists():
                walk(path + (name,), child)

    walk((), root_file)
    return found


def expand(tree: str) -> list[str]:
    """`a::{b, c::{d, e}}` → ['a::b', 'a::c::d', 'a::c::e']."""
    tree = re.sub(r"\s+", "", tree)
    depth, start = 0, None
    for i, ch in enumerate(tree):
        if ch == "{":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0 and start is not None:
                prefix, inner, rest = tree[:start], tree[start + 1:i], tree[i + 1:]
                parts, d, cur = [], 0, ""
                for c in inner:
                    if c == "," and d == 0:
                        parts.append(cur)
                        cur = ""
                        continue
                    d += c == "{"
                    d -= c == "}"
                    cur += c
                parts.append(cur)
                return [x for p in parts if p for x in expand(prefix + p + rest)]
    return [re.sub(r"\bas\w+$", "", tree.split(" as ")[0])]


def resolve(segments: list[str], here: tuple[str, ...], mods: dict) -> tuple[str, ...] | None:
    if not segments:
        return None
    if segments[0] == "crate":
        absolute = list(segments[1:])
    elif segments[0] in ("super", "self"):
        base = list(here)
        while segments and segments[0] in ("super", "self"):
            if segments[0] == "super":
                base = base[:-1]
            segments = segments[1:]
        absolute = base + list(segments)
    elif tuple(here) + (segments[0],) in mods:
        absolute = list(here) + list(segments)
    else:
        return None  # an external crate or a prelude name
    for n in range(len(absolute), -1, -1):
        if tuple(absolute[:n]) in mods:
            return tuple(absolute[:n])
    return None


def graph(src: Path) -> dict[Path, set[Path]]:
    root = src / "lib.rs" if (src / "lib.rs").exists() else src / "main.rs"
    mods = modules(root)
    edges: dict[Path, set[Path]] = {f: set() for f in mods.values()}
    for path, file in mods.items():
        text = code_only(file.read_text())
        blocks = inline_modules(text)
        found = [(m.start(), p) for m in USE.finditer(text) for p in expand(m.group(1).replace("pub ", ""))]
        found += [(m.start(), m.group(1)) for m in INLINE.finditer(text)]
        found += [(m.start(), m.group(1)) for m in RELATIVE.finditer(text)
                  if not m.group(1).startswith(("crate::", "super::", "self::"))]
        for at, name in found:
            # Inside `mod tests { … }` a `super::` is this file's module.
            here = path + tuple(n for start, end, n in blocks if start < at < end)
            target = resolve(name.split("::"), here, mods)
            if target is not None and mods[target] != file:
                edges[file].add(mods[target])
    return edges


def inline_modules(text: str) -> list[tuple[int, int, str]]:
    """(start, end, name) of each `mod name { … }` block, nested ones included."""
    blocks = []
    for m in re.finditer(r"\bmod\s+(\w+)\s*\{", text):
        depth = 0
        for i in range(m.end() - 1, len(text)):
            depth += text[i] == "{"
            depth -= text[i] == "}"
            if depth == 0:
                blocks.append((m.start(), i, m.group(1)))
                break
    return blocks


def circles(edges: dict[Path, set[Path]]) -> list[list[Path]]:
    """Strongly connected components of more than one file (Tarjan)."""
    index: dict[Path, int] = {}
    low: dict[Path, int] = {}
    stack: list[Path] = []
    on: set[Path] = set()
    out: list[list[Path]] = []
    counter = [0]

    def visit(v: Path) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        src = Path(arg)
        found = circles(graph(src))
        print(f"{src}: {len(found)} circle(s)")
        for comp in found:
            print("  " + " <-> ".join(str(p.relative_to(src)) for p in comp))
