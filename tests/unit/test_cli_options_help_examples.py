"""Every example command in every --help text parses: a wrong example teaches a command
line that fails (`dcctl -i rack1.yaml --dcgm 1 check` once did: --dcgm belongs to check).

Examples are read from each command's help and epilog, as a user would copy them: a line
whose text (after an `Example:` label) starts with `dcctl `, cut at a shell pipe,
redirection or comment. Each is parsed with the real command tree, option values converted
and checked, down to the last subcommand; nothing runs, so no inventory needs to exist.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from typing import Any

import pytest
import typer.main

from dcctl.cli.main import app

_EXAMPLE = re.compile(r"^\s*(?:Examples?:\s*)?(dcctl\s.*)$")
_SHELL_OPERATORS = {"|", "||", ">", ">>", "<", "&", "&&", ";"}


def commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    yield path, command
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from commands(sub, (*path, name))


def examples_of(command: Any) -> list[str]:
    text = f"{command.help or ''}\n{command.epilog or ''}"
    return [match.group(1) for line in text.splitlines() if (match := _EXAMPLE.match(line))]


def argv_of(example: str) -> list[str]:
    """The words dcctl itself receives: shell operators and what follows them cut off."""
    lexer = shlex.shlex(example, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    words: list[str] = []
    for word in lexer:  # comments (`# ...`) are dropped by the lexer
        if word in _SHELL_OPERATORS:
            break
        words.append(word)
    assert words[0] == "dcctl"
    return words[1:]


def parse(argv: list[str]) -> list[str]:
    """Parse like `dcctl` would, without invoking anything; the command path reached."""
    command: Any = typer.main.get_command(app)
    context = command.make_context("dcctl", list(argv))
    reached: list[str] = []
    while hasattr(command, "commands"):
        rest = [*context._protected_args, *context.args]  # how click's Group.invoke reads them
        name, command, rest = command.resolve_command(context, rest)
        reached.append(name)
        context = command.make_context(name, rest, parent=context)
    return reached


ROOT = typer.main.get_command(app)
EXAMPLES = [
    pytest.param(example, id=f"{' '.join(path) or 'dcctl'}: {example}")
    for path, command in commands(ROOT)
    for example in examples_of(command)
]


def test_the_help_texts_have_examples() -> None:
    # The extraction itself must keep finding them, or this file would test nothing.
    assert len(EXAMPLES) >= 6


@pytest.mark.parametrize("example", EXAMPLES)
def test_help_example_parses(example: str) -> None:
    reached = parse(argv_of(example))
    assert reached, f"{example!r} names no command"


def test_a_misplaced_option_is_caught() -> None:
    # The example this test was written for: what it would have said.
    with pytest.raises(Exception, match="No such option: --dcgm"):
        parse(argv_of("dcctl -i rack1.yaml --dcgm 1 check"))
