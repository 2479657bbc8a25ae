"""A throwaway copy of the thyrokit DVC project in a temp git repo, for end-to-end tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
TEST_SECRET = "e2e-test-secret-not-for-real-data-0123456789"


def tool_env(**extra: str) -> dict[str, str]:
    """Environment in which `thyrokit`, `dvc` and `git` of this venv are found."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["THYROKIT_SECRET"] = TEST_SECRET
    env.pop("THYROKIT_SECRET_FILE", None)
    env.setdefault("GIT_AUTHOR_NAME", "thyrokit tests")
    env.setdefault("GIT_AUTHOR_EMAIL", "tests@example.org")
    env.setdefault("GIT_COMMITTER_NAME", "thyrokit tests")
    env.setdefault("GIT_COMMITTER_EMAIL", "tests@example.org")
    env["DVC_NO_ANALYTICS"] = "1"
    env.update(extra)
    return env


def run(args: list[str], cwd: Path, env: dict[str, str] | None = None,
        check: bool = True) -> subprocess.CompletedProcess:
    """Run a command, raising with its output when it fails."""
    result = subprocess.run(args, cwd=cwd, env=env or tool_env(), capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} exited {result.returncode}\n--- stdout\n{result.stdout[-4000:]}"
            f"\n--- stderr\n{result.stderr[-6000:]}"
        )
    return result


def make_project(root: Path, params: dict[str, Any], remote: Path | None = None) -> Path:
    """Create a git + DVC repo at `root` with this repo's dvc.yaml, source and the given params."""
    root.mkdir(parents=True, exist_ok=True)
    for name in ("dvc.yaml", ".dvcignore"):  # `dvc init` keeps a .dvcignore that is there
        shutil.copy(REPO / name, root / name)
    # The stages list the thyrokit source as deps; their commands still import the installed one.
    shutil.copytree(REPO / "thyrokit", root / "thyrokit", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copytree(REPO / "data/annotations", root / "data/annotations")
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q", "-b", "main"], root)
    run(["dvc", "init", "-q"], root)
    if remote is not None:
        run(["dvc", "remote", "add", "-d", "local", str(remote)], root)
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-qm", "project"], root)
    return root


def small_params(patients: int = 24, seed: int = 3) -> dict[str, Any]:
    """This repo's params.yaml, shrunk so that a whole `dvc repro` takes a few minutes."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["demo"] = {"phantom": {"patients": patients, "seed": seed}}
    # Models train for a token number of steps: these tests check the pipeline's wiring,
    # the models' own tests check that they learn.
    params["prelabel"].update(steps=60, mc_samples=2)
    params["pseudolabel"].update(steps=60, ramp=20)
    synth = params["synth"]
    synth["encoder"].update(steps=60)
    synth["gan"].update(steps=60, checkpoint_every=30)
    synth["diffusion"].update(steps=40, checkpoint_every=20, inference_steps=5)
    synth["eval"].update(samples_per_class=20, classifier_steps=40, kid_subset_size=10, kid_subsets=5)
    return params


def repro(root: Path, *args: str) -> list[str]:
    """Run `dvc repro` and return the names of the stages it ran."""
    output = run(["dvc", "repro", *args], root).stdout
    return [line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")]
