"""The source itself: names that are used before they exist break a run only when reached."""

from __future__ import annotations

from pathlib import Path

import pytest
from pyflakes import api, messages, reporter

ROOT = Path(__file__).resolve().parents[1]
BROKEN = (messages.UndefinedName, messages.UndefinedLocal, messages.UndefinedExport)


class Collect(reporter.Reporter):
    """A pyflakes reporter that keeps the messages instead of printing them."""

    def __init__(self) -> None:
        super().__init__(None, None)
        self.found: list[messages.Message] = []

    def flake(self, message: messages.Message) -> None:
        self.found.append(message)

    def syntaxError(self, filename, msg, lineno, offset, text) -> None:  # noqa: N802 (pyflakes' name)
        raise SyntaxError(f"{filename}:{lineno}: {msg}")

    def unexpectedError(self, filename, msg) -> None:  # noqa: N802
        raise RuntimeError(f"{filename}: {msg}")


@pytest.mark.parametrize("folder", ["thyrokit", "benchmarks", "tests"])
def test_no_name_is_used_that_is_never_defined(folder):
    # A benchmark once called a helper it never imported: nothing ran it until a person did.
    collect = Collect()
    api.checkRecursive([str(ROOT / folder)], collect)
    broken = [str(message) for message in collect.found if isinstance(message, BROKEN)]
    assert not broken, "\n".join(broken)
