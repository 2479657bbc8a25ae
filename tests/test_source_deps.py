"""dvc.yaml lists the thyrokit code of each stage, so that `dvc repro` re-runs a stage whose code changed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from source_closure import REPO, stage_closure

STAGES: dict[str, dict] = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def definition(name: str) -> dict:
    """Return stage `name` of dvc.yaml; a foreach stage is defined by its `do` block."""
    return STAGES[name].get("do", STAGES[name])


def covers(deps: list[str], path: Path) -> bool:
    """Whether one of `deps` is `path` itself or a folder above it."""
    return any(Path(dep) == path or Path(dep) in path.parents for dep in deps)


@pytest.mark.parametrize("name", list(STAGES))
def test_stage_deps_cover_the_code_its_command_runs(name: str) -> None:
    stage = definition(name)
    code = stage_closure(stage["cmd"])
    assert code, f"stage {name!r}: no `thyrokit` command found in its cmd"
    missing = sorted(str(path) for path in code if not covers(stage.get("deps", []), path))
    assert not missing, f"stage {name!r} runs {', '.join(missing)}, which its deps in dvc.yaml do not list"

