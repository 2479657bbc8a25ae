"""Which thyrokit source files a `thyrokit ...` command runs: its import closure, read from the AST."""

from __future__ import annotations

import ast
import shlex
from pathlib import Path

import click

from pipeline_project import REPO
from thyrokit.cli import main


def module_file(name: str) -> Path | None:
    """Return the file of thyrokit module `name` relative to the repo, or None if it is not one."""
    base = Path(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if (REPO / candidate).is_file():
            return candidate
    return None


def with_parents(name: str) -> list[str]:
    """Return `name` and every package above it: importing a.b.c runs a, a.b and a.b.c."""
    parts = name.split(".")
    return [".".join(parts[:end]) for end in range(1, len(parts) + 1)]


def absolute_source(node: ast.ImportFrom, package: str) -> str:
    """Return the absolute module name that `from ... import` statement `node` in `package` reads."""
    if not node.level:
        return node.module
    # `from . import x` in package a.b means a.b; each further dot goes one package up.
    parts = package.split(".")
    base = ".".join(parts[:len(parts) - node.level + 1])
    return f"{base}.{node.module}" if node.module else base


def imported_names(name: str) -> set[str]:
    """Return the thyrokit modules that module `name` imports anywhere, function bodies included."""
    path = module_file(name)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse((REPO / path).read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            source = absolute_source(node, package)
            found.add(source)
            # `from a import b` may name module a.b rather than an attribute of a.
            found.update(f"{source}.{alias.name}" for alias in node.names)
    return {module for module in found
            if module.split(".")[0] == "thyrokit" and module_file(module) is not None}


def import_closure(roots: set[str]) -> set[Path]:
    """Return the files of `roots` and of every thyrokit module they import, directly or not."""
    seen: set[str] = set()
    waiting = [parent for root in roots for parent in with_parents(root)]
    while waiting:
        name = waiting.pop()
        if name not in seen:
            seen.add(name)
            waiting.extend(parent for module in imported_names(name) for parent in with_parents(module))
    return {module_file(name) for name in seen}


def command_modules(words: list[str]) -> set[str]:
    """Return the modules defining each click group and command along `thyrokit <words...>`."""
    command: click.Command | None = main
    modules = {main.callback.__module__}
    context = click.Context(main)
    for word in words:
        if not isinstance(command, click.Group):
            break  # the words left are the command's arguments
        command = command.get_command(context, word)
        if command is None:
            raise ValueError(f"`thyrokit {' '.join(words)}`: no command {word!r}")
        modules.add(command.callback.__module__)
    return modules


def stage_commands(cmd: str) -> list[list[str]]:
    """Return the words after `thyrokit` of each thyrokit command in a stage's shell `cmd`."""
    commands: list[list[str]] = [[]]
    for word in shlex.split(cmd):
        if word in ("&&", "||", ";", "|"):
            commands.append([])
        else:
            commands[-1].append(word)
    return [words[1:] for words in commands if words and words[0] == "thyrokit"]


def stage_closure(cmd: str) -> set[Path]:
    """Return the thyrokit source files that the commands of a stage's `cmd` run."""
    roots = {module for words in stage_commands(cmd) for module in command_modules(words)}
    return import_closure(roots)
