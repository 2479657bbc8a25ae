"""The Label Studio round trip against a real server on 127.0.0.1 (see studio_server.py).

push -> an annotator accepts, edits, rejects and labels from scratch through the API ->
pull gives exactly their masks and labels; pushing again duplicates nothing; a push cut
off by a dead server completes on the next run; a wrong token or a dead server is one
clear line, with nothing written and the token never shown.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

import studio_data
from studio_server import free_port
from thyrokit.annotate.cli import annotate
from thyrokit.annotate.studio.client import StudioError, connect, export_annotated, find_project, list_tasks
from thyrokit.annotate.studio.config import labelling_config
from thyrokit.annotate.studio.push import push, read_push_inputs
from thyrokit.annotate.studio.tasks import brush_result, choice_result
from thyrokit.contract import NODULES, read_table
from thyrokit.pixels import read_image, read_pngs

pytestmark = pytest.mark.slow


@pytest.fixture
def studio_env(studio_server, monkeypatch):
    monkeypatch.setenv("LABEL_STUDIO_URL", studio_server.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", studio_server.token)
    monkeypatch.setenv("LOCAL_FILES_DOCUMENT_ROOT", str(studio_server.home.files_dir))
    return studio_server


def write_inputs(folder: Path, count: int) -> tuple[Path, Path, Path]:
    images = studio_data.write_images(folder / "split", studio_data.image_ids(count))
    return (images, *studio_data.write_predictions(folder / "prelabel", studio_data.image_ids(count)))


def params_file(folder: Path, project: str, batch_size: int) -> Path:
    path = folder / "params.yaml"
    path.write_text(f"studio:\n  project: {project}\n  batch_size: {batch_size}\n")
    return path


def tasks_by_image(studio, project: str) -> dict[str, dict]:
    tasks = list_tasks(studio, find_project(studio, project))
    ids = [task["data"]["image_id"] for task in tasks]
    assert len(ids) == len(set(ids)), "an image has two tasks"
    return {task["data"]["image_id"]: task for task in tasks}


def test_push_annotate_pull_push_again(studio_env, tmp_path):
    images, nodules, uncertainty = write_inputs(tmp_path, 6)
    params = params_file(tmp_path, "round trip", 4)
    runner = CliRunner()
    pushed = runner.invoke(annotate, ["push", str(images), str(nodules), str(uncertainty), "--params", str(params)])
    assert pushed.exit_code == 0, pushed.output
    assert "6 tasks created" in pushed.output

    studio = connect()
    tasks = tasks_by_image(studio, "round trip")
    project = studio.client.projects.get(find_project(studio, "round trip"))
    assert (project.sampling, project.model_version) == ("Uncertainty sampling", studio_data.MODEL_VERSION)
    assert project.label_config == labelling_config()
    by_id = sorted(tasks.values(), key=lambda task: task["id"])
    # Most uncertain first, and its prediction has the lowest score (served first).
    assert [task["data"]["image_id"] for task in by_id] == studio_data.image_ids(6)[::-1]
    scores = [task["predictions"][0]["score"] for task in by_id]
    assert scores == sorted(scores)
    # Only the de-identified image and pseudonymous ids reach Label Studio.
    assert all(set(task["data"]) == {"image", "image_id", "uncertainty"} for task in by_id)
    sent = json.dumps(export_annotated(studio, find_project(studio, "round trip")) + by_id, default=str)
    assert not any(value in sent for value in ("pat-", "std-", "ser-", "site-A", "dev-1"))
    served = httpx.get(studio_env.url + tasks["img-0002"]["data"]["image"],
                       headers={"Authorization": f"Token {studio_env.token}"})
    shard = read_table(images, studio_data.IMAGES).filter(pl.col("image_id") == "img-0002").item(0, "path")
    assert served.status_code == 200
    assert served.content == read_pngs(images.parent / shard, ["img-0002"])["img-0002"]

    # An annotator at work: accept, edit, reject, label from scratch (one image each).
    edited_mask, scratch_mask = studio_data.disc(20, radius=9), studio_data.disc(33, radius=4)
    accepted = copy.deepcopy(tasks["img-0000"]["predictions"][0]["result"])
    edited = [item for item in copy.deepcopy(tasks["img-0001"]["predictions"][0]["result"])
              if item["type"] != "brushlabels" and item["from_name"] != "pathology"]
    edited += [brush_result("n0", edited_mask), choice_result("n0", "pathology", ["malignant"])]
    scratch = [brush_result("mine", scratch_mask), choice_result("mine", "pathology", ["benign"]),
               choice_result("mine", "composition", ["spongiform"])]
    unknown_label = [brush_result("odd", scratch_mask) | {"from_name": "lesion"}]  # the server accepts it
    for image_id, result in [("img-0000", accepted), ("img-0001", edited), ("img-0002", []),
                             ("img-0003", scratch), ("img-0004", unknown_label)]:
        studio.client.annotations.create(tasks[image_id]["id"], result=result)

    out = tmp_path / "annotations" / "label_studio.parquet"
    pulled = runner.invoke(annotate, ["pull", str(images), str(out), "--params", str(params)])
    assert pulled.exit_code == 0, pulled.output
    assert f"task {tasks['img-0004']['id']} annotation" in pulled.output
    assert "'from_name' 'lesion' not found in configuration; skipped" in pulled.output
    table = read_table(out, NODULES)
    assert table.get_column("image_id").to_list() == ["img-0000", "img-0001", "img-0003"]
    assert set(table.get_column("label_source")) == {"human"}
    rows = {row["image_id"]: row for row in table.iter_rows(named=True)}
    expected = {"img-0000": studio_data.disc(0), "img-0001": edited_mask, "img-0003": scratch_mask}
    for image_id, mask in expected.items():
        row = rows[image_id]
        assert np.array_equal(read_image(out.parent / row["mask_path"], row["nodule_id"]), mask)
        assert row["bbox"] == studio_data.bbox_of(mask)
    assert [rows[i]["pathology"] for i in expected] == ["benign", "malignant", "benign"]
    assert rows["img-0000"]["tirads"] == "TR4"  # solid 2 + hypoechoic 2, as predicted
    assert rows["img-0003"]["composition"] == "spongiform" and rows["img-0003"]["tirads"] is None
    assert rows["img-0000"]["annotator"].startswith("ls-user-") and rows["img-0000"]["updated_at"] is not None
    labelled = pl.read_parquet(out.parent / "labelled_images.parquet")
    assert labelled.get_column("image_id").to_list() == ["img-0000", "img-0001", "img-0002", "img-0003"]

    again = runner.invoke(annotate, ["push", str(images), str(nodules), str(uncertainty), "--params", str(params)])
    assert again.exit_code == 0, again.output
    assert "0 tasks created" in again.output and "6 unchanged" in again.output
    after = tasks_by_image(studio, "round trip")
    assert len(after) == 6 and len(after["img-0001"]["annotations"]) == 1


def test_new_model_version_replaces_predictions_and_keeps_annotations(studio_env, tmp_path):
    images, nodules, uncertainty = write_inputs(tmp_path, 3)
    studio = connect()
    first = push(studio, read_push_inputs(images, nodules, uncertainty), studio_env.home.files_dir, "new model")
    task = tasks_by_image(studio, "new model")["img-0000"]
    studio.client.annotations.create(task["id"], result=[])
    nodules, uncertainty = studio_data.write_predictions(tmp_path / "prelabel", studio_data.image_ids(3),
                                                         model_version="v2", radius=5)
    second = push(studio, read_push_inputs(images, nodules, uncertainty), studio_env.home.files_dir, "new model")
    assert (first.tasks_created, second.tasks_created, second.predictions_replaced) == (3, 0, 3)
    tasks = tasks_by_image(studio, "new model")
    assert all([p["model_version"] for p in task["predictions"]] == ["v2"] for task in tasks.values())
    assert studio.client.projects.get(first.project_id).model_version == "v2"  # annotators see the new ones
    assert len(tasks["img-0000"]["annotations"]) == 1


def test_a_push_cut_off_by_a_dead_server_completes_on_the_next_run(studio_env, tmp_path):
    count = 40
    inputs = read_push_inputs(*write_inputs(tmp_path, count))
    studio = connect()
    failures = []

    def push_in_background():
        try:  # one request per task: plenty of time to pull the plug half-way
            push(studio, inputs, studio_env.home.files_dir, "interrupted", batch_size=1)
        except StudioError as error:
            failures.append(str(error))

    worker = threading.Thread(target=push_in_background)
    worker.start()
    try:
        done, deadline = 0, time.monotonic() + 120
        while done == 0 and worker.is_alive() and time.monotonic() < deadline:
            try:
                done = len(list_tasks(studio, find_project(studio, "interrupted")))
            except StudioError:  # the project may not exist yet
                pass
        studio_env.kill()
        worker.join(60)
    finally:
        studio_env.start()
    assert len(failures) == 1 and ("cannot reach Label Studio" in failures[0] or "did not answer" in failures[0])
    assert 0 < len(tasks_by_image(studio, "interrupted")) < count

    report = push(studio, inputs, studio_env.home.files_dir, "interrupted", batch_size=1)
    assert not report.problems
    assert sorted(tasks_by_image(studio, "interrupted")) == studio_data.image_ids(count)


def test_a_wrong_token_is_a_clear_error_that_does_not_show_it(studio_env, tmp_path, monkeypatch):
    images, nodules, uncertainty = write_inputs(tmp_path, 2)
    wrong = "f" * 40
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", wrong)
    result = CliRunner().invoke(annotate, ["push", str(images), str(nodules), str(uncertainty),
                                           "--params", str(params_file(tmp_path, "wrong token", 10))])
    assert result.exit_code == 1
    assert "refused the API key (HTTP 401)" in result.output and "LABEL_STUDIO_API_KEY" in result.output
    assert wrong not in result.output and studio_env.token not in result.output


def test_pull_from_a_server_that_is_down_writes_nothing(studio_env, tmp_path, monkeypatch):
    images = studio_data.write_images(tmp_path / "split", studio_data.image_ids(2))
    monkeypatch.setenv("LABEL_STUDIO_URL", f"http://127.0.0.1:{free_port()}")
    out = tmp_path / "annotations" / "label_studio.parquet"
    result = CliRunner().invoke(annotate, ["pull", str(images), str(out)])
    assert result.exit_code == 1
    assert "cannot reach Label Studio at http://127.0.0.1:" in result.output
    assert not out.parent.exists()
