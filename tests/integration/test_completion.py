"""``nodecert completion bash``, run by a real bash: commands, subcommands, options, files."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from nodecert.cli import main

BASH = shutil.which("bash")
pytestmark = pytest.mark.skipif(BASH is None, reason="bash is not installed")


def complete(script: Path, line: str, cwd: Path) -> list[str]:
    """What bash offers for the last word of ``line`` (a trailing space: a new word)."""
    words = line.split(" ")
    program = (
        f"source {script}\n"
        f"COMP_WORDS=({' '.join(repr(w) for w in words)})\n"
        f"COMP_CWORD={len(words) - 1}\n"
        "_nodecert\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    done = subprocess.run(
        [BASH, "--noprofile", "--norc", "-c", program],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=cwd,
        check=True,
    )
    return [w for w in done.stdout.splitlines() if w]


@pytest.fixture
def script(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    assert main(["completion", "bash"]) == 0
    path = tmp_path / "nodecert.bash"
    path.write_text(capsys.readouterr().out)
    return path


def test_commands_subcommands_and_options_complete(script, tmp_path):
    assert "revoke-all" in complete(script, "nodecert re", tmp_path)
    assert set(complete(script, "nodecert re", tmp_path)) == {
        "renew",
        "request",
        "revoke",
        "revoke-all",
    }
    assert complete(script, "nodecert nodes ", tmp_path) == [
        "--help",
        "-h",
        "add",
        "certificate",
        "list",
        "remove",
    ]
    assert complete(script, "nodecert nodes certificate n1 --i", tmp_path) == ["--ip"]
    offered = complete(script, "nodecert nodes add n1 --owner alice --", tmp_path)
    assert "--transfer" in offered and "--owner-subject" in offered and "--ip" not in offered
    assert complete(script, "nodecert request n1 --p12", tmp_path) == [
        "--p12",
        "--p12-password-file",
    ]


def test_other_words_complete_as_files(script, tmp_path):
    (tmp_path / "n1.crt").write_text("x")
    assert complete(script, "nodecert inspect n1", tmp_path) == ["n1.crt"]


def test_the_script_lists_only_options_the_parser_has(script):
    from nodecert.cli.commands import build_parser

    text = script.read_text()
    assert "--p12-password-file" in text and "--owner-subject" in text
    assert build_parser().prog == "nodecert"
