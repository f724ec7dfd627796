"""The module moves of issue 17 item 5 ("rooms that show the parts"), as one table.

``python tools/rooms.py rewrite`` rewrites, in the files of the current checkout, every
reference to a moved module (imports, ``from nodecert.x import module``, mock.patch targets
and other dotted strings, ``src/nodecert/...`` paths in docs and config) to its new name.
It is idempotent, so it can be run on a branch made before the moves, before or after
merging it. ``python tools/rooms.py move GROUP`` does the ``git mv`` of one group and the
rewrite (how the moves were made). Logger names (``getLogger("...")``) are left alone: the
log lines keep their logger names.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

# (group, old path, new path), relative to the repository.
MOVES: list[tuple[str, str, str]] = [
    # Plumbing shared by adapters: below them, above the core.
    ("support", "src/nodecert/awsclients.py", "src/nodecert/support/awsclients.py"),
    ("support", "src/nodecert/core/blocking.py", "src/nodecert/support/blocking.py"),
    ("support", "src/nodecert/core/budget.py", "src/nodecert/support/budget.py"),
    ("support", "src/nodecert/core/files.py", "src/nodecert/support/files.py"),
    # Stores, one subpackage per technology; SQL shared by SQLite and PostgreSQL in sql/.
    ("store", "src/nodecert/store/_select.py", "src/nodecert/store/memory_query.py"),
    ("store", "src/nodecert/store/_sql.py", "src/nodecert/store/sql/ledger.py"),
    ("store", "src/nodecert/store/_sql_outbox.py", "src/nodecert/store/sql/outbox.py"),
    ("store", "src/nodecert/store/sqlite.py", "src/nodecert/store/sqlite/store.py"),
    ("store", "src/nodecert/store/sqlite_file.py", "src/nodecert/store/sqlite/file.py"),
    ("store", "src/nodecert/store/groupcommit.py", "src/nodecert/store/sqlite/groupcommit.py"),
    ("store", "src/nodecert/store/postgres.py", "src/nodecert/store/postgres/store.py"),
    ("store", "src/nodecert/store/_postgres_schema.py", "src/nodecert/store/postgres/schema.py"),
    ("store", "src/nodecert/store/dynamodb.py", "src/nodecert/store/dynamodb/store.py"),
    ("store", "src/nodecert/store/dynamodb_limits.py", "src/nodecert/store/dynamodb/limits.py"),
    ("store", "src/nodecert/store/dynamodb_outbox.py", "src/nodecert/store/dynamodb/outbox.py"),
    ("store", "src/nodecert/store/_dynamodb.py", "src/nodecert/store/dynamodb/tables.py"),
    ("store", "src/nodecert/store/_dynamodb_items.py", "src/nodecert/store/dynamodb/items.py"),
    ("store", "src/nodecert/store/_dynamodb_upgrade.py", "src/nodecert/store/dynamodb/upgrade.py"),
    # CA backends, one subpackage per technology; the signer seam with the keys it serves.
    ("backends", "src/nodecert/backends/local.py", "src/nodecert/backends/local/ca.py"),
    ("backends", "src/nodecert/backends/local_files.py", "src/nodecert/backends/local/home.py"),
    (
        "backends",
        "src/nodecert/backends/local_revocations.py",
        "src/nodecert/backends/local/revocations.py",
    ),
    ("backends", "src/nodecert/backends/hierarchy.py", "src/nodecert/backends/local/hierarchy.py"),
    ("backends", "src/nodecert/backends/issuer.py", "src/nodecert/backends/local/issuer.py"),
    ("backends", "src/nodecert/backends/profile.py", "src/nodecert/backends/local/profile.py"),
    ("backends", "src/nodecert/backends/rotation.py", "src/nodecert/backends/local/rotation.py"),
    ("backends", "src/nodecert/backends/signer.py", "src/nodecert/backends/signers/external.py"),
    ("backends", "src/nodecert/backends/kms.py", "src/nodecert/backends/signers/kms.py"),
    ("backends", "src/nodecert/backends/pkcs11.py", "src/nodecert/backends/signers/pkcs11.py"),
    ("backends", "src/nodecert/backends/acmpca.py", "src/nodecert/backends/acmpca/backend.py"),
    ("backends", "src/nodecert/backends/pca_calls.py", "src/nodecert/backends/acmpca/calls.py"),
    ("backends", "src/nodecert/backends/pca_polling.py", "src/nodecert/backends/acmpca/polling.py"),
    (
        "backends",
        "src/nodecert/backends/pca_shapes.py",
        "src/nodecert/backends/acmpca/parameters.py",
    ),
    (
        "backends",
        "src/nodecert/backends/pca_intermediate.py",
        "src/nodecert/backends/acmpca/intermediate.py",
    ),
    # Names that say their job.
    ("names", "src/nodecert/issuing/crlder.py", "src/nodecert/issuing/crl_entries.py"),
    ("names", "src/nodecert/issuing/shapes.py", "src/nodecert/issuing/values.py"),
    ("names", "src/nodecert/issuing/succession.py", "src/nodecert/issuing/renewal_once.py"),
    ("names", "tests/unit/test_crlder.py", "tests/unit/test_crl_entries.py"),
    # The renewal agent in one subpackage of the client.
    ("renewal", "src/nodecert/client/renew.py", "src/nodecert/client/renewal/agent.py"),
    ("renewal", "src/nodecert/client/_rotation.py", "src/nodecert/client/renewal/_rotation.py"),
    ("renewal", "src/nodecert/client/_target.py", "src/nodecert/client/renewal/_target.py"),
    ("renewal", "src/nodecert/client/_pair.py", "src/nodecert/client/renewal/_pair.py"),
    ("renewal", "src/nodecert/client/_hook.py", "src/nodecert/client/renewal/_hook.py"),
    (
        "renewal",
        "src/nodecert/client/_revocation.py",
        "src/nodecert/client/renewal/_revocation.py",
    ),
    # The test kit, named for what it is.
    ("kit", "tests/nodeside.py", "tests/kit.py"),
]

# Where references are rewritten. CHANGELOG.md is history: its old names stay.
TEXT_ROOTS = ["src", "tests", "benchmarks", "docs", "deploy", "tools", ".ci"]
TEXT_FILES = ["README.md", "Makefile", "pyproject.toml"]
SUFFIXES = {".py", ".md", ".toml", ".yaml", ".yml", ".sh", ".txt", ".cfg", ".ini", ".json", ""}


def _dotted(path: str) -> str:
    """``src/nodecert/store/sqlite.py`` -> ``nodecert.store.sqlite``; tests keep ``tests.``."""
    stem = path.removeprefix("src/").removesuffix(".py")
    return stem.replace("/", ".")


def _module_moves(moves: list[tuple[str, str, str]]) -> dict[str, str]:
    return {_dotted(old): _dotted(new) for _, old, new in moves}


def _children(new_modules: list[str]) -> dict[str, set[str]]:
    """Each package of the new layout -> the names directly inside it."""
    kids: dict[str, set[str]] = {}
    for module in new_modules:
        parts = module.split(".")
        for i in range(1, len(parts)):
            kids.setdefault(".".join(parts[:i]), set()).add(parts[i])
    # And the modules added to those packages since (acmpca/rotation.py, local/root_crl.py):
    # `nodecert.backends.acmpca.rotation` is a new module, not the old acmpca.py's attribute.
    for package, names in kids.items():
        directory = Path("src", *package.split(".")) if package.startswith("nodecert") else None
        if directory is not None and directory.is_dir():
            names |= {p.stem for p in directory.iterdir() if p.suffix == ".py" or p.is_dir()}
    return kids


_Rule = tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]]


def _rules(moves: list[tuple[str, str, str]]) -> list[_Rule]:
    modules = _module_moves(moves)
    kids = _children(list(modules.values()))
    rules: list[_Rule] = []
    # `from nodecert.store import sqlite_file [as x]` -> `from nodecert.store.sqlite import
    # file as sqlite_file`: the name the importing code uses stays.
    for old, new in modules.items():
        parent, _, name = old.rpartition(".")
        new_parent, _, new_name = new.rpartition(".")
        alias = "" if new_name == name else f" as {name}"
        pattern = rf"^([ \t]*)from {re.escape(parent)} import {re.escape(name)}([ \t]+as[ \t]+\w+)?"
        rules.append(
            (re.compile(pattern + r"(?=[ \t]*$)", re.M), _from_import(new_parent, new_name, alias))
        )
    # Dotted names, longest first; a name that is now a package is not rewritten when what
    # follows is one of the package's new modules (so the rewrite is idempotent).
    for old in sorted(modules, key=len, reverse=True):
        new = modules[old]
        guard = ""
        if old in kids:
            names = "|".join(sorted(kids[old]))
            guard = rf"(?!\.(?:{names})\b)(?! import (?:{names})\b)"
        rules.append((re.compile(rf"(?<![\w.]){re.escape(old)}(?![\w]){guard}"), new))
    # Paths in docs, comments and config.
    for _, old, new in sorted(moves, key=lambda m: len(m[1]), reverse=True):
        old_tail = old.removeprefix("src/nodecert/")
        new_tail = new.removeprefix("src/nodecert/")
        prefix = new_tail.removesuffix(old_tail) if new_tail.endswith("/" + old_tail) else ""
        guard = rf"(?<!{re.escape(prefix)})" if prefix else ""
        rules.append((re.compile(rf"(?<![\w.]){guard}{re.escape(old_tail)}(?![\w])"), new_tail))
    # The SQL shared by SQLite and PostgreSQL was imported as two private modules.
    if any(old == "src/nodecert/store/_sql.py" for _, old, _ in moves):
        rules += [
            (
                re.compile(r"^from nodecert\.store import _sql, _sql_outbox$", re.M),
                "from nodecert.store.sql import ledger, outbox",
            ),
            (re.compile(r"(?<![\w./])_sql_outbox\."), "outbox."),
            (re.compile(r"(?<![\w./])_sql\."), "ledger."),
        ]
    return rules


def _from_import(new_parent: str, new_name: str, alias: str) -> Callable[[re.Match[str]], str]:
    def replace(match: re.Match[str]) -> str:
        as_clause = match.group(2) or alias
        return f"{match.group(1)}from {new_parent} import {new_name}{as_clause}"

    return replace


def _files() -> list[Path]:
    out = [Path(f) for f in TEXT_FILES if Path(f).is_file()]
    for root in TEXT_ROOTS:
        for path in Path(root).rglob("*"):
            if path.is_file() and path.suffix in SUFFIXES and "__pycache__" not in path.parts:
                out.append(path)
    return [p for p in out if p != Path("tools/rooms.py")]


def rewrite(moves: list[tuple[str, str, str]]) -> list[Path]:
    rules = _rules(moves)
    changed = []
    for path in _files():
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        lines = text.splitlines(keepends=True)
        out = []
        for line in lines:
            if "getLogger(" not in line:
                for pattern, replacement in rules:
                    line = pattern.sub(replacement, line)
            out.append(line)
        new_text = "".join(out)
        if new_text != text:
            path.write_text(new_text)
            changed.append(path)
    return changed


def move(group: str) -> None:
    moves = [m for m in MOVES if m[0] == group]
    for _, old, new in moves:
        Path(new).parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "mv", old, new], check=True)
    for path in rewrite(moves):
        print("rewrote", path)


def main(argv: list[str]) -> int:
    if argv[:1] == ["rewrite"]:
        for path in rewrite(MOVES):
            print("rewrote", path)
        return 0
    if argv[:1] == ["move"] and len(argv) == 2:
        move(argv[1])
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
