"""End to end on a tiny patch table: synth train (encoder, gan, diffusion) -> sample -> eval."""

import json
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner
from synth_fixtures import make_patch_table

from thyrokit.cli import main
from thyrokit.contract import NODULES, PATCHES, read_table

COUNTS = {("train", "benign"): 30, ("train", "malignant"): 10, ("validation", "benign"): 6,
          ("validation", "malignant"): 6, ("test", "benign"): 8, ("test", "malignant"): 8,
          ("external", "benign"): 5, ("external", "malignant"): 5}
PARAMS = {"synth": {
    "data": {"size": 16, "classes": ["benign", "malignant"], "label_sources": ["human"], "seed": 3},
    "encoder": {"steps": 10, "batch_size": 8},
    "gan": {"steps": 6, "batch_size": 8, "channels": 16, "z_dim": 8, "checkpoint_every": 3, "log_every": 2},
    "diffusion": {"steps": 4, "batch_size": 8, "block_out_channels": [16, 32], "inference_steps": 3,
                  "log_every": 2, "privacy": {"enabled": True, "noise_multiplier": 1.0}},
    "sample": {"generators": ["gan", "diffusion"], "batch_size": 16},
    "eval": {"samples_per_class": 12, "classifier_steps": 5, "kid_subset_size": 10, "kid_subsets": 5},
}}


def run(*args: str) -> None:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output


@pytest.mark.slow
def test_train_sample_eval_balances_the_train_split_only(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    monkeypatch.chdir(tmp_path)
    make_patch_table(Path("roi"), COUNTS, size=24)  # resized to 16 by the stages
    Path("params.yaml").write_text(yaml.safe_dump(PARAMS))
    for kind in ("encoder", "gan", "diffusion"):
        run("synth", "train", kind, "roi/patches.parquet", f"models/{'synth_encoder' if kind == 'encoder' else kind}",
            "--live", f"live/{kind}", "--plots", f"plots/{kind}", "--metrics", f"metrics/train_{kind}.json",
            "--checkpoint", f"ckpt/{kind}.pt")
    for kind in ("gan", "diffusion"):
        assert (tmp_path / f"plots/{kind}/samples_malignant.png").is_file()
        assert list((tmp_path / f"live/{kind}/plots/metrics").rglob("*.tsv"))

    run("synth", "sample", "roi/patches.parquet", "models", "synth", "--metrics", "metrics/sample.json")
    patches = read_table("synth/patches.parquet", PATCHES)
    nodules = read_table("synth/nodules.parquet", NODULES)
    assert patches.get_column("split").unique().to_list() == ["train"]
    assert patches.get_column("label_source").unique().to_list() == ["synthetic"]
    # 30 benign vs 10 malignant: exactly 20 malignant made, shared 10/10 by the two generators.
    assert patches.group_by("pathology").len().rows() == [("malignant", 20)]
    assert nodules.get_column("generator").str.extract(r"^(\w+):").value_counts().sort("generator").rows() == [
        ("diffusion", 10), ("gan", 10)]
    generator_pattern = r"^(gan:[0-9a-f]{12}|diffusion:[0-9a-f]{12}\+ddim3\+cfg2):seed=\d+$"
    assert nodules.get_column("generator").str.contains(generator_pattern).all()
    assert set(nodules.get_column("tirads").to_list()) <= {"TR4", "TR5"}
    report = json.loads(Path("metrics/sample.json").read_text())
    assert report["classes"]["malignant"] == {"real": 10, "deficit": 20, "synthetic": 20}

    first = Path("synth/patches.parquet").read_bytes(), Path("synth/pixels/patches-00000.parquet").read_bytes()
    run("synth", "sample", "roi/patches.parquet", "models", "synth", "--metrics", "metrics/sample.json")
    assert (Path("synth/patches.parquet").read_bytes(), Path("synth/pixels/patches-00000.parquet").read_bytes()) == first

    run("synth", "eval", "roi/patches.parquet", "models", "--metrics", "metrics/eval.json", "--plots", "plots/eval")
    figures = json.loads(Path("metrics/eval.json").read_text())
    assert sorted(figures) == ["diffusion", "gan"]
    for name in figures:
        for key in ("kid", "fid", "precision", "recall", "memorised_rejected", "nn_ssim_max",
                    "balanced_accuracy_real", "balanced_accuracy_real_plus_synth", "auc_real",
                    "auc_real_plus_synth", "tstr_balanced_accuracy"):
            assert figures[name][key] is not None, (name, key)
        assert sorted(figures[name]["splits"]) == ["external", "held_out", "test", "validation"]
    # The privacy guarantee travels with each generator's figures (the dataset card shows it).
    assert figures["gan"]["dp"] == {"enabled": False, "epsilon": None, "delta": None, "noise_multiplier": None}
    trained = json.loads(Path("metrics/train_diffusion.json").read_text())
    assert figures["diffusion"]["dp"] == {"enabled": True, "epsilon": trained["epsilon"], "delta": 1e-5,
                                          "noise_multiplier": 1.0}
    assert 0 < trained["epsilon"] < float("inf")
    assert Path("plots/eval/utility.png").is_file()

    # A target already met (0.3 x 30 benign = 9 < 10 malignant) writes valid, empty tables.
    params = yaml.safe_load(Path("params.yaml").read_text())
    params["synth"]["sample"]["target_ratio"] = 0.3
    Path("params.yaml").write_text(yaml.safe_dump(params))
    run("synth", "sample", "roi/patches.parquet", "models", "balanced", "--metrics", "metrics/balanced.json")
    assert read_table("balanced/patches.parquet", PATCHES).is_empty()
    assert read_table("balanced/nodules.parquet", NODULES).is_empty()


def test_a_class_without_real_train_patches_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_patch_table(Path("roi"), {("train", "benign"): 4, ("test", "malignant"): 4}, size=16)
    Path("params.yaml").write_text(yaml.safe_dump(PARAMS))
    result = CliRunner().invoke(main, ["synth", "train", "gan", "roi/patches.parquet", "models/gan",
                                       "--live", "live", "--plots", "plots", "--metrics", "m.json"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        "Error: roi/patches.parquet: no train-split patches of class 'malignant' to learn from")
