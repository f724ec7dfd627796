"""``nodecert completion``: the scripts are made from the parser and work in the shell."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.processes import NODECERT


def _script(shell: str) -> str:
    done = subprocess.run(
        [NODECERT, "completion", shell], capture_output=True, text=True, check=True, timeout=60
    )
    return done.stdout


def _complete(words: list[str]) -> list[str]:
    # What bash offers after `nodecert <words>` with the cursor on the last word.
    line = " ".join(f"'{w}'" for w in ["nodecert", *words])
    program = (
        f"{_script('bash')}\n"
        f"COMP_WORDS=({line}); COMP_CWORD={len(words)}; _nodecert; "
        'printf "%s\\n" "${COMPREPLY[@]}"'
    )
    done = subprocess.run(
        ["bash", "-c", program], capture_output=True, text=True, check=True, timeout=60
    )
    return done.stdout.split()


def test_bash_completes_commands_subcommands_options_and_choices() -> None:
    assert {"request", "renew", "audit", "login", "completion", "nodes"} <= set(_complete([""]))
    assert _complete(["re"]) == ["renew", "request", "revoke", "revoke-all"]
    assert "add" in _complete(["nodes", ""])
    assert "--key-type" in _complete(["request", "n1", "--k"])
    assert _complete(["completion", ""]) == ["bash", "fish", "zsh"]
    assert _complete(["login", "--redirect-host", ""]) == ["127.0.0.1", "localhost"]
    assert "--transfer" in _complete(["nodes", "add", "n1", "--"])


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_the_other_shells_parse_their_script(shell: str) -> None:
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed (apt-get install {shell})")
    check = ["zsh", "-n", "-c"] if shell == "zsh" else ["fish", "--no-execute", "-c"]
    done = subprocess.run(
        [*check, _script(shell)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
