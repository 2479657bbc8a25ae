"""Label Studio round trip at scale: push 1,000 pre-labelled tasks, pull 1,000 annotated ones.

Starts a real Label Studio on 127.0.0.1 from a home folder (the first start migrates
its database, about a minute; later runs reuse it), pushes N images with one predicted
nodule each, turns every prediction into an annotation (the Data Manager's
"predictions to annotations" action, as an annotator accepting them all would), pulls,
and pushes again unchanged. Targets: push and pull each under 15 s for 1,000 tasks.

    python benchmarks/studio_roundtrip.py --tasks 1000 --size 256
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))

import studio_data  # noqa: E402
from studio_server import free_port  # noqa: E402
from thyrokit.annotate.studio.client import NO_RETRY, connect, export_annotated, find_project  # noqa: E402
from thyrokit.annotate.studio.pull import PullReport, pull_tables  # noqa: E402
from thyrokit.annotate.studio.push import push, read_push_inputs  # noqa: E402
from thyrokit.annotate.studio.server import (prepare_home, server_url, start_server, stop_server,  # noqa: E402
                                             wait_until_ready)

HOST = "127.0.0.1"


def timed(label: str, fn, *args, **kwargs):
    """Run fn, print how long it took, and return its result and the seconds."""
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    seconds = time.perf_counter() - start
    click.echo(f"{label:<38} {seconds:7.2f} s")
    return result, seconds


@click.command()
@click.option("--tasks", "count", default=1000, show_default=True)
@click.option("--size", default=256, show_default=True, help="Image side in pixels.")
@click.option("--home", type=click.Path(file_okay=False, path_type=Path),
              default=Path.home() / ".cache" / "thyrokit" / "ls-bench", show_default=True,
              help="Label Studio home; reused between runs so only the first one migrates.")
def main(count: int, size: int, home: Path) -> None:
    """Time push, pull and an unchanged re-push of COUNT tasks."""
    studio_home = prepare_home(home)
    port = free_port()
    process = start_server(studio_home, HOST, port)
    try:
        timed("start Label Studio", wait_until_ready, server_url(HOST, port), process)
        with tempfile.TemporaryDirectory() as folder:
            run(Path(folder), count, (size, size), studio_home, server_url(HOST, port))
    finally:
        stop_server(process)


def run(folder: Path, count: int, shape: tuple[int, int], home, url: str) -> None:
    ids = studio_data.image_ids(count)
    images = studio_data.write_images(folder / "split", ids, shape)
    nodules, uncertainty = studio_data.write_predictions(folder / "prelabel", ids, shape=shape)
    studio = connect(url, home.token())
    title = f"benchmark {time.strftime('%Y%m%d-%H%M%S')}"
    inputs = read_push_inputs(images, nodules, uncertainty)

    report, push_s = timed(f"push {count} tasks with predictions", push, studio, inputs, home.files_dir, title)
    assert report.tasks_created == count, report.counts()
    _, repush_s = timed("push again, unchanged", push, studio, inputs, home.files_dir, title)
    project = find_project(studio, title)
    timed("accept every prediction (one action)", studio.client.actions.create,
          id="predictions_to_annotations", project=project, selected_items={"all": True, "excluded": []},
          request_options=NO_RETRY | {"timeout": 600})
    tasks, export_s = timed("export annotated tasks", export_annotated, studio, project)
    sizes = {image_id: shape for image_id in ids}
    pulled = PullReport()
    table, convert_s = timed("convert + write nodules table", pull_tables, tasks, sizes,
                             folder / "annotations" / "label_studio.parquet", pulled)
    assert table.height == count and not pulled.problems, pulled.problems[:3]
    click.echo(f"\n{count} tasks of {shape[0]}x{shape[1]}: push {push_s:.1f} s ({count / push_s:.0f} tasks/s), "
               f"pull {export_s + convert_s:.1f} s ({count / (export_s + convert_s):.0f} tasks/s), "
               f"unchanged re-push {repush_s:.1f} s; target: push and pull each < 15 s")


if __name__ == "__main__":
    main()
