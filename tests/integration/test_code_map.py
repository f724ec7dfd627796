"""docs/architecture.md names every package of src/nodecert and the layers pyproject holds.

A package added, moved or removed without its line in the code map, or a layer changed in
the import contract without the page, fails here, so the map cannot drift from the code.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "architecture.md"
SRC = ROOT / "src" / "nodecert"


def packages(src: Path) -> set[str]:
    """Every package under ``src`` as ``path/`` (``store/sqlite/``), the root excluded."""
    return {
        f"{init.parent.relative_to(src).as_posix()}/"
        for init in src.rglob("__init__.py")
        if init.parent != src
    }


def mapped(text: str) -> set[str]:
    """The ``path/`` (or ``module.py``) that begins each line of the code map."""
    section = text.split("<!-- code map", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^- `([a-z_/]+/|[a-z_]+\.py)`", section, re.M))


def layers_shown(text: str) -> list[str]:
    block = text.split("<!-- layers", 1)[1].split("```", 2)[1]
    return [line.strip() for line in block.strip().splitlines()]


def layers_contract(pyproject: Path) -> list[str]:
    config = tomllib.loads(pyproject.read_text())["tool"]["importlinter"]["contracts"]
    (contract,) = [c for c in config if c["id"] == "layers"]
    return list(contract["layers"])


def map_problems(text: str, src: Path) -> list[str]:
    shown, real = mapped(text), packages(src)
    problems = [f"{p} is a package but not in the code map" for p in sorted(real - shown)]
    problems += [
        f"{p} is in the code map but not in src/nodecert"
        for p in sorted(shown - real)
        if not (p.endswith(".py") and (src / p).is_file())
    ]
    return problems


def test_a_package_missing_from_the_map_or_a_stale_line_is_reported(tmp_path: Path) -> None:
    src = tmp_path / "nodecert"
    for package in ("core", "store", "store/sqlite"):
        (src / package).mkdir(parents=True)
        (src / package / "__init__.py").write_text("")
    (src / "__init__.py").write_text("")
    text = "<!-- code map -->\n- `core/`: the core.\n- `store/gone/`: moved away.\n"
    assert map_problems(text, src) == [
        "store/ is a package but not in the code map",
        "store/sqlite/ is a package but not in the code map",
        "store/gone/ is in the code map but not in src/nodecert",
    ]


def test_the_code_map_names_every_package_and_nothing_else() -> None:
    assert map_problems(DOC.read_text(), SRC) == []


def test_the_layers_shown_are_the_layers_of_the_contract() -> None:
    assert layers_shown(DOC.read_text()) == layers_contract(ROOT / "pyproject.toml")
