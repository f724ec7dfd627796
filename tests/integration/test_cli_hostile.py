"""A hostile or careless user of the CLI: wrong homes, wrong URLs, wrong files (issue 14)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from nodecert.cli.commands import main
from tests.processes import NODECERT, nodecert_env


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("argv", [["nodes", "list"], ["nodes", "add", "n1", "--owner", "a"]])
def test_admin_commands_leave_a_directory_that_is_no_home_alone(
    tmp_path: Path, argv: list[str]
) -> None:
    # NODECERT_HOME pointing at an existing directory of the user's (a typo, $HOME): an
    # admin command must not turn it into a home (a new CA, a dev issuer, chmod 0700).
    mine = tmp_path / "mine"
    mine.mkdir(mode=0o755)
    os.chmod(mine, 0o755)
    (mine / "notes.txt").write_text("mine")
    os.chmod(mine / "notes.txt", 0o644)
    env = nodecert_env(mine)
    done = subprocess.run([NODECERT, *argv], env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 1, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert f"{mine} is not a nodecert home" in done.stderr
    assert "nodecert init" in done.stderr
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
    assert (mine.stat().st_mode & 0o777, (mine / "notes.txt").stat().st_mode & 0o777) == (
        0o755,
        0o644,
    )


def test_dev_token_leaves_a_directory_that_is_no_home_alone(tmp_path: Path) -> None:
    env = nodecert_env(tmp_path)
    done = subprocess.run(
        [NODECERT, "dev-token", "alice"], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 1 and "nodecert init" in done.stderr
    assert list(tmp_path.iterdir()) == []
