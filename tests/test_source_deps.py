"""dvc.yaml lists the thyrokit code of each stage, so that `dvc repro` re-runs a stage whose code changed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from pipeline_project import REPO, make_project, repro, run, small_params
from source_closure import stage_closure

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


@pytest.fixture
def demo_project(tmp_path: Path) -> Path:
    """A small project in which the demo stage, the cheapest one, has run."""
    root = make_project(tmp_path / "project", small_params(patients=2))
    repro(root, "demo")
    return root


def changed_stages(root: Path) -> dict:
    """Return what `dvc status` finds changed, stage by stage."""
    return json.loads(run(["dvc", "status", "--json"], root).stdout)


@pytest.mark.slow
def test_editing_a_stage_source_file_changes_the_stage(demo_project: Path) -> None:
    assert "demo@phantom" not in changed_stages(demo_project)
    with (demo_project / "thyrokit/pipelines/phantom/generate.py").open("a") as source:
        source.write("# an edit\n")
    assert changed_stages(demo_project).get("demo@phantom") == [
        {"changed deps": {"thyrokit/pipelines/phantom": "modified"}}]


@pytest.mark.slow
def test_bytecode_beside_the_source_does_not_change_the_stage(demo_project: Path) -> None:
    cache = demo_project / "thyrokit/pipelines/phantom/__pycache__"
    cache.mkdir()
    (cache / "generate.cpython-311.pyc").write_bytes(b"bytecode")
    assert "demo@phantom" not in changed_stages(demo_project)
