"""The layering is enforced: the import contract holds, and a violation fails it.

`make lint` runs `lint-imports` too; running it here puts it in every test run (and so in
CI). The node side is also checked the way a node sees it: what `import nodecert.verify`
actually loads, measured with `python -X importtime`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"

# What a node that installed `pip install nodecert` must not load to check a certificate.
NODE_FORBIDDEN = (
    "fastapi",
    "starlette",
    "pydantic",
    "boto3",
    "botocore",
    "jwt",
    "nodecert.issuing",
    "nodecert.http",
    "nodecert.backends",
    "nodecert.store",
    "nodecert.verifiers",
    "nodecert.bootstrap",
)


def _lint_imports(config: Path, *, cwd: Path, pythonpath: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--config", str(config)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _loaded_modules(statement: str) -> set[str]:
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", statement],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    modules = set()
    for line in result.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name != "imported package":
                modules.add(name)
    return modules


def _forbidden(modules: set[str]) -> list[str]:
    return sorted(
        m for m in modules if any(m == f or m.startswith(f + ".") for f in NODE_FORBIDDEN)
    )


def test_the_real_tree_keeps_every_contract() -> None:
    result = _lint_imports(ROOT / "pyproject.toml", cwd=ROOT, pythonpath=ROOT / "src")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


VIOLATIONS = [
    pytest.param(
        "nodeside/access.py",
        "from nodecert.issuing.authority import Authority as _Authority  # noqa\n",
        "nodecert.nodeside.access -> nodecert.issuing.authority",
        id="node-side-imports-issuing",
    ),
    pytest.param(
        "core/identity.py",
        "import fastapi as _fastapi  # noqa\n",
        "nodecert.core.identity -> fastapi",
        id="core-imports-a-framework",
    ),
    pytest.param(
        "store/sqlite/file.py",
        "from nodecert.http import contract as _contract  # noqa\n",
        "nodecert.store.sqlite.file -> nodecert.http.contract",
        id="adapter-imports-another-adapter",
    ),
    pytest.param(
        "issuing/keypool.py",
        "from nodecert.bootstrap import build_service as _build  # noqa\n",
        "nodecert.issuing.keypool -> nodecert.bootstrap",
        id="use-case-imports-bootstrap",
    ),
    pytest.param(
        "http/routes.py",
        "from nodecert.client import Client as _Client  # noqa\n",
        "nodecert.http.routes -> nodecert.client",
        id="server-package-imports-the-client",
    ),
    pytest.param(
        "client/_transport.py",
        "import boto3 as _boto3  # noqa\n",
        "nodecert.client._transport -> boto3",
        id="client-imports-an-sdk",
    ),
]


@pytest.mark.parametrize(("module", "line", "reported"), VIOLATIONS)
def test_a_deliberate_violation_fails_the_contract(
    tmp_path: Path, module: str, line: str, reported: str
) -> None:
    shutil.copytree(ROOT / "src" / "nodecert", tmp_path / "src" / "nodecert")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / "src" / "nodecert" / module
    target.write_text(line + target.read_text())
    result = _lint_imports(tmp_path / "pyproject.toml", cwd=tmp_path, pythonpath=tmp_path / "src")
    assert result.returncode != 0, result.stdout
    assert "BROKEN" in result.stdout
    assert reported in result.stdout, result.stdout


def test_importing_nodecert_verify_loads_no_framework_sdk_or_issuing_module() -> None:
    modules = _loaded_modules("import nodecert.verify")
    # The measurement sees the node side itself, so an empty list below means something.
    assert "nodecert.nodeside.verify" in modules
    assert "nodecert.core.identity" in modules
    assert _forbidden(modules) == []


def test_the_importtime_check_sees_what_the_service_loads() -> None:
    # The same check on the HTTP service must find FastAPI and the use cases: the check
    # above passes because the node side is lean, not because the measurement is blind.
    found = _forbidden(_loaded_modules("import nodecert.http.app"))
    assert "fastapi" in found
    assert "nodecert.issuing.authority" in found


def test_the_lambda_handler_loads_no_web_framework() -> None:
    # The Lambda package carries no FastAPI, Starlette or pydantic: the route table names
    # its models instead of importing them, and the handler must stay that way.
    modules = _loaded_modules("import nodecert.aws.handler")
    assert "nodecert.http.api" in modules
    assert not {m.split(".")[0] for m in modules} & {"fastapi", "starlette", "pydantic"}


# ``import nodecert`` runs before any nodecert module (``nodecert.aws.handler`` included),
# so it must load nothing itself: the Lambda handler pauses the cyclic collector from its
# own first line, and everything nodecert loads has to come after that line.
def test_importing_the_package_loads_no_module_of_its_own_nor_cryptography() -> None:
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json, sys; import nodecert; from nodecert import NodecertError;"
            " print(json.dumps(sorted(sys.modules)))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    loaded = json.loads(child.stdout)
    ours = [m for m in loaded if m.startswith("nodecert.")]
    # The error asked for brought its own module (and what it imports), nothing else.
    assert "nodecert.core.errors" in ours
    assert not any(m.startswith("cryptography") for m in loaded)
    assert "nodecert.core.identity" not in ours and "nodecert.client" not in ours
