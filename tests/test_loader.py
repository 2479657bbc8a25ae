"""The modeller's loader, over a local release folder and over a git+DVC repository at a tag."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from export_fixtures import FINDINGS, PSEUDO, disc, make_inputs, scan
from thyrokit.contract import SPLITS
from thyrokit.pipelines import load_release
from thyrokit.pipelines.export import ExportInputs, ExportParams, export_release

torch.set_num_threads(1)
EXPECTED = {  # images with a mask (negatives too), and benign/malignant patches (train has 4 synthetic ones)
    "segmentation": {"train": 6, "validation": 1, "test": 1, "external": 2},
    "classification": {"train": 9, "validation": 1, "test": 1, "external": 1},
}


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("loader")
    paths = make_inputs(root / "interim")
    inputs = ExportInputs(paths["images"], paths["nodules"], paths["patches"], paths["synthetic"], paths["pseudo"],
                          labelled_images=paths["labelled-images"])
    export_release(inputs, root / "release", ExportParams(formats=()))
    return root / "release"


@pytest.mark.parametrize("task", ["segmentation", "classification"])
def test_every_split_loads_through_a_dataloader(release, task):
    for split in SPLITS:
        dataset = load_release(release, split, task=task)
        assert len(dataset) == EXPECTED[task][split]
        for image, mask, label in DataLoader(dataset, batch_size=1):
            assert image.dtype == torch.float32 and image.shape[1] == 1 and 0 <= image.min() <= image.max() <= 1
            assert mask.shape[2:] == image.shape[2:] and set(mask.unique().tolist()) <= {0.0, 1.0}
            assert label.item() in (-1, 0, 1, 2) if task == "segmentation" else label.item() in (0, 1)


def test_segmentation_item_is_the_image_its_union_mask_and_worst_label(release):
    dataset = load_release(release, "train")
    image, mask, label = dataset[dataset.keys.index("img-p00")]
    assert np.array_equal((image[0].numpy() * 255).round().astype(np.uint8), scan("img-p00", FINDINGS + PSEUDO))
    union = np.maximum(disc((12, 12), 5), disc((34, 26), 6)) > 0
    assert np.array_equal(mask[0].numpy() > 0, union)
    assert label.item() == 1  # malignant


def test_image_labelled_with_no_finding_is_a_negative_with_an_empty_mask(release):
    dataset = load_release(release, "external")
    image, mask, label = dataset[dataset.keys.index("img-p51")]
    assert mask.shape[1:] == image.shape[1:] and mask.sum().item() == 0
    assert label.item() == -1


def test_bad_split_or_task_is_named(release):
    with pytest.raises(ValueError, match="split must be one of"):
        load_release(release, "training")
    with pytest.raises(ValueError, match="task must be one of"):
        load_release(release, "train", task="detection")


def git(repo: Path, *arguments: str) -> None:
    subprocess.run(["git", *arguments], cwd=repo, check=True, capture_output=True)


def dvc(repo: Path, *arguments: str) -> None:
    subprocess.run([shutil.which("dvc") or "dvc", *arguments], cwd=repo, check=True, capture_output=True)


def test_loads_a_tagged_release_from_a_dvc_repository(release, tmp_path):
    repo, remote = tmp_path / "repo", tmp_path / "remote"
    repo.mkdir()
    git(repo, "init", "-q")
    git(repo, "config", "user.email", "test@example.org")
    git(repo, "config", "user.name", "test")
    dvc(repo, "init", "-q")
    dvc(repo, "remote", "add", "-d", "store", str(remote))
    shutil.copytree(release, repo / "data" / "release")
    dvc(repo, "add", "data/release")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "release v1")
    git(repo, "tag", "v1")
    dvc(repo, "push", "-q")
    # Only the remote holds the pixels now: the loader must fetch them through DVC.
    shutil.rmtree(repo / "data" / "release")
    shutil.rmtree(repo / ".dvc" / "cache")

    dataset = load_release(repo, "validation", rev="v1")
    image, mask, label = dataset[0]
    local = load_release(release, "validation")[0]
    assert len(dataset) == 1 and all(torch.equal(a, b) for a, b in zip((image, mask, label), local))
    assert len(load_release(repo, "train", rev="v1", task="classification")) == 9
