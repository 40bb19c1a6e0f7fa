"""No two source files of a crate import each other in a circle (the redesign issue)."""
from pathlib import Path

import pytest

from import_graph import circles, graph

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("crate", ["operator/src", "push-server/src", "push-server/contract/src"])
def test_no_import_circle_between_files(crate):
    found = circles(graph(ROOT / crate))
    assert not found, "import circles:\n" + "\n".join(
        " <-> ".join(str(p.relative_to(ROOT / crate)) for p in comp) for comp in found)


def test_the_checker_sees_a_circle_and_ignores_a_parent_declaring_its_tests(tmp_path):
    src = tmp_path / "src"
    (src / "a").mkdir(parents=True)
    (src / "lib.rs").write_text("mod a;\nmod b;\n")
    (src / "a" / "mod.rs").write_text(
        'mod tests;\nuse crate::b::B;\n// use crate::c;\nconst X: &str = "http://x";\npub struct A;\n')
    (src / "a" / "tests.rs").write_text("use super::*;\n")
    (src / "b.rs").write_text("pub struct B(crate::a::A);\n#[cfg(test)]\nmod t {\n    use super::*;\n}\n")
    assert circles(graph(src)) == [[src / "a" / "mod.rs", src / "b.rs"]]
    (src / "b.rs").write_text("pub struct B;\n")
    assert circles(graph(src)) == []


def test_the_checker_follows_inline_paths_into_declared_modules(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "lib.rs").write_text("mod a;\npub fn f() -> u8 { a::g() }\n")
    (src / "a.rs").write_text("pub fn g() -> u8 { 1 }\n")
    assert circles(graph(src)) == []
    (src / "a.rs").write_text("use crate::f;\npub fn g() -> u8 { f() }\n")
    assert circles(graph(src)) == [[src / "a.rs", src / "lib.rs"]]
