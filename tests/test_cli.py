"""The `thyrokit` command line: every command loads and explains itself."""

from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner

from thyrokit.cli import COMMANDS, main


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_loads_and_has_help(name):
    result = CliRunner().invoke(main, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_top_level_help_lists_every_command_without_loading_torch():
    code = ("import sys; from click.testing import CliRunner; from thyrokit.cli import main; "
            "r = CliRunner().invoke(main, ['--help']); print(r.output); "
            "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')")
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert all(name in output for name in COMMANDS)
    assert output.strip().endswith("NO-TORCH")


def test_unknown_command_is_a_usage_error():
    result = CliRunner().invoke(main, ["ingest-everything"])
    assert result.exit_code == 2
    assert "No such command" in result.output
