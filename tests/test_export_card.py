"""The dataset card: readable offline, counts and metrics present, no raw site names, any git state."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from export_fixtures import make_inputs
from thyrokit.pipelines.card import upstream_lock_digest
from thyrokit.pipelines.export import ExportInputs, ExportParams, export_release
from thyrokit.pixels import decode_png

PARAMS = """\
ingest:
  sites:
    st_olaf_general: site-A
export:
  formats: []
split:
  seed: 13
"""


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("card")
    paths = make_inputs(root / "interim")
    (root / "params.yaml").write_text(PARAMS)
    inputs = ExportInputs(paths["images"], paths["nodules"], paths["patches"], paths["synthetic"],
                          paths["pseudo"], paths["splits-final"], paths["leakage"], paths["metrics-dir"],
                          root / "params.yaml", labelled_images=paths["labelled-images"])
    export_release(inputs, root / "release", ExportParams(formats=()))
    return root / "release"


def test_markdown_card_links_pictures_beside_it(release):
    card = (release / "card.md").read_text()
    pictures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", card)
    assert "card/class_balance.png" in pictures and "card/split_composition.png" in pictures
    assert "card/montage_synthetic_malignant.png" in pictures and "card/montage_real_benign.png" in pictures
    for picture in pictures:
        assert decode_png((release / picture).read_bytes()).size > 0


def test_html_card_is_self_contained(release, tmp_path):
    alone = tmp_path / "card.html"
    shutil.copy(release / "card.html", alone)  # away from its pictures: must still show them
    page = alone.read_text()
    sources = re.findall(r'src="([^"]+)"', page)
    assert len(sources) >= 6 and all(source.startswith("data:image/png;base64,") for source in sources)
    assert "http" not in page and "<link" not in page


def test_card_reports_counts_balance_metrics_and_leakage(release):
    card = (release / "card.md").read_text()
    assert "| images | 15 | 9 | 2 | 2 | 2 |" in card
    assert "| malignant | 1 | 3 |" in card  # train real vs real + synthetic
    assert "| text_boxes_redacted | 7 |" in card  # de-identification, from metrics/ingest.json
    assert "### prelabel" in card and "| dice | 0.71 |" in card
    assert "audit passed over 15 images" in card and "| patient in two splits | 0 |" in card
    assert "| human, no finding | 1 | 0 | 0 | 1 |" in card  # img-p01 (train), img-p51 (external)
    assert "| none | 1 | 0 | 0 | 1 |" in card
    assert "git commit" in card and "seed: 13" in card


def test_card_never_shows_raw_site_folders(release):
    for name in ("card.md", "card.html", "summary.json"):
        assert "st_olaf_general" not in (release / name).read_text()


def test_card_builds_outside_a_git_checkout(tmp_path, monkeypatch):
    paths = make_inputs(tmp_path / "interim")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    inputs = ExportInputs(paths["images"], paths["nodules"], paths["patches"])
    export_release(inputs, tmp_path / "release", ExportParams(formats=()))
    card = (tmp_path / "release" / "card.md").read_text()
    assert "| git commit | unknown (not a git checkout) |" in card
    assert "No leakage audit was given." in card and "No ingest metrics were found." in card


def test_revision_digest_ignores_this_stages_own_lock_entry(tmp_path):
    lock = tmp_path / "dvc.lock"
    lock.write_text("schema: '2.0'\nstages:\n  split: {outs: [{md5: aaa}]}\n  export: {outs: [{md5: bbb}]}\n")
    first = upstream_lock_digest(lock)
    lock.write_text("schema: '2.0'\nstages:\n  split: {outs: [{md5: aaa}]}\n  export: {outs: [{md5: ccc}]}\n")
    assert upstream_lock_digest(lock) == first
    lock.write_text("schema: '2.0'\nstages:\n  split: {outs: [{md5: ddd}]}\n  export: {outs: [{md5: ccc}]}\n")
    assert upstream_lock_digest(lock) != first
    assert upstream_lock_digest(tmp_path / "absent.lock") == "none"
