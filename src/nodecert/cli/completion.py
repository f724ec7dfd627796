"""``nodecert completion bash|zsh|fish``: shell completion, made from the parser itself.

The commands, their options and the options' fixed choices are read off the argument parser
(:func:`nodecert.cli.commands.build_parser`), so a new command or option completes without
anyone editing a script. Install with, e.g.::

    nodecert completion bash > /etc/bash_completion.d/nodecert
    nodecert completion zsh > "${fpath[1]}/_nodecert"
    nodecert completion fish > ~/.config/fish/completions/nodecert.fish
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["add_completion_command", "command_table"]

Table = dict[str, dict[str, list[str]]]


def add_completion_command(sub: Any, parser_factory: Callable[[], argparse.ArgumentParser]) -> None:
    """Add ``nodecert completion`` to ``sub``; ``parser_factory`` builds the whole parser."""
    completion = sub.add_parser(
        "completion",
        help="print a shell completion script (bash, zsh or fish)",
        description="Print a completion script for SHELL on stdout; see its first lines.",
    )
    completion.add_argument(
        "shell", choices=["bash", "zsh", "fish"], metavar="SHELL", help="bash, zsh or fish"
    )
    completion.set_defaults(
        handler=lambda args: sys.stdout.write(_SCRIPTS[args.shell](command_table(parser_factory())))
    )


def command_table(parser: argparse.ArgumentParser) -> Table:
    """Each command path (``nodes add``) with its options and their choices (``""``: top)."""
    table: Table = {}

    def walk(current: argparse.ArgumentParser, path: str) -> None:
        entry: dict[str, list[str]] = {}
        for action in current._actions:
            if isinstance(action, argparse._SubParsersAction):
                entry["__commands__"] = sorted(action.choices)
                for name, child in action.choices.items():
                    walk(child, f"{path} {name}".strip())
            for option in action.option_strings:
                entry[option] = sorted(str(c) for c in action.choices or ())
            if (
                not action.option_strings
                and action.choices
                and not isinstance(action, argparse._SubParsersAction)
            ):
                entry["__positional__"] = sorted(str(c) for c in action.choices)
        table[path] = entry

    walk(parser, "")
    return table


def _bash(table: Table) -> str:
    cases = []
    for path, entry in sorted(table.items()):
        words = [*entry.get("__commands__", ()), *entry.get("__positional__", ())]
        # Options are offered once a dash is typed, as git does.
        options = [o for o in entry if o.startswith("-")]
        choices = "".join(
            f"            {shlex.quote(option)}) COMPREPLY=($(compgen -W {shlex.quote(' '.join(c))}"
            ' -- "$cur")); return;;\n'
            for option, c in entry.items()
            if option.startswith("-") and c
        )
        cases.append(
            f"        {shlex.quote(path)})\n"
            f'            case "$prev" in\n{choices}            esac\n'
            '            if [[ "$cur" == -* ]]; then\n'
            f"                COMPREPLY=($(compgen -W {shlex.quote(' '.join(options))}"
            ' -- "$cur"))\n'
            "            else\n"
            f"                COMPREPLY=($(compgen -W {shlex.quote(' '.join(words))}"
            ' -- "$cur"))\n'
            "            fi;;\n"
        )
    return (
        "# bash completion for nodecert (made by `nodecert completion bash`)\n"
        "_nodecert() {\n"
        '    local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}"\n'
        '    local path="" word i\n'
        "    for ((i = 1; i < COMP_CWORD; i++)); do\n"
        '        word="${COMP_WORDS[i]}"\n'
        '        [[ "$word" == -* ]] && continue\n'
        '        case " $(_nodecert_commands "$path") " in\n'
        '            *" $word "*) path="${path:+$path }$word";;\n'
        "        esac\n"
        "    done\n"
        '    case "$path" in\n' + "".join(cases) + "    esac\n"
        "}\n"
        "_nodecert_commands() {\n"
        '    case "$1" in\n'
        + "".join(
            f"        {shlex.quote(path)}) echo {shlex.quote(' '.join(entry['__commands__']))};;\n"
            for path, entry in sorted(table.items())
            if "__commands__" in entry
        )
        + "    esac\n"
        "}\n"
        "complete -o default -F _nodecert nodecert\n"
    )


def _zsh(table: Table) -> str:
    # zsh runs the bash function through bashcompinit: one generated logic for both.
    return (
        "#compdef nodecert\n"
        "# zsh completion for nodecert (made by `nodecert completion zsh`)\n"
        "autoload -U +X bashcompinit && bashcompinit\n" + _bash(table).split("\n", 1)[1]
    )


def _fish(table: Table) -> str:
    lines = ["# fish completion for nodecert (made by `nodecert completion fish`)"]
    top = table.get("", {})
    for command in top.get("__commands__", ()):
        lines.append(f"complete -c nodecert -n __fish_use_subcommand -f -a {shlex.quote(command)}")
    for path, entry in sorted(table.items()):
        if not path:
            continue
        first = path.split()[0]
        condition = f"__fish_seen_subcommand_from {shlex.quote(first)}"
        for command in entry.get("__commands__", ()):
            lines.append(f"complete -c nodecert -n {shlex.quote(condition)} -f -a {command}")
        for option, choices in entry.items():
            if option.startswith("--"):
                extra = f" -x -a {shlex.quote(' '.join(choices))}" if choices else ""
                lines.append(
                    f"complete -c nodecert -n {shlex.quote(condition)} -l {option[2:]}{extra}"
                )
    return "\n".join(lines) + "\n"


_SCRIPTS: dict[str, Callable[[Table], str]] = {"bash": _bash, "zsh": _zsh, "fish": _fish}
