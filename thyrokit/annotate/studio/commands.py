"""``thyrokit annotate server / push / pull``: the Label Studio round trip's commands."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import click

from thyrokit.params import load_params

FILES_ENV = "LOCAL_FILES_DOCUMENT_ROOT"
DEFAULT_PROJECT = "thyrokit thyroid nodules"


def studio_params(params_path: Path) -> dict:
    """Return the `studio` section of params.yaml, or {} where the file has none."""
    try:
        return load_params("studio", params_path)
    except (FileNotFoundError, KeyError):
        return {}


def fail(error: Exception) -> None:
    """Stop the command with the error's one line."""
    raise click.ClickException(str(error))


@click.command("server")
@click.argument("home", type=click.Path(file_okay=False, path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8080, show_default=True, type=int)
def server_command(home: Path, host: str, port: int) -> None:
    """Run Label Studio with its database, served images and credentials under HOME.

    The first start creates the admin user and an API token (in HOME/api_token, owner
    read-only) and runs the database migrations (about a minute); later starts take
    seconds. Stop it with Ctrl-C (or SIGTERM).
    """
    from thyrokit.annotate.studio.server import (ADMIN_USER, StudioServerError, prepare_home, server_url,
                                                 start_server, stop_server, wait_until_ready)

    studio_home = prepare_home(home)
    url = server_url(host, port)
    # Ctrl-C, and the SIGTERM a service manager sends, both stop Label Studio with us.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _interrupt)
    process = start_server(studio_home, host, port)
    try:
        wait_until_ready(url, process)
        click.echo(f"Label Studio is running at {url} (log: {studio_home.log_file})\n"
                   f"  log in as {ADMIN_USER}; the password is in {studio_home.password_file}\n"
                   f"  for `thyrokit annotate push` and `pull`:\n"
                   f"    export LABEL_STUDIO_URL={url}\n"
                   f"    export LABEL_STUDIO_API_KEY=$(cat {studio_home.token_file})\n"
                   f"    export {FILES_ENV}={studio_home.files_dir}")
        process.wait()
    except StudioServerError as error:
        fail(error)
    except KeyboardInterrupt:
        click.echo("stopping Label Studio", err=True)
    finally:
        stop_server(process)


def _interrupt(signum: int, frame) -> None:
    raise KeyboardInterrupt


@click.command("push")
@click.argument("images_table", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("predictions_table", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("uncertainty_table", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--files-dir", envvar=FILES_ENV, required=True, type=click.Path(file_okay=False, path_type=Path),
              help=f"Label Studio's document root for served files (default: ${FILES_ENV}).")
@click.option("--project", "project_title", help=f"Project title [params studio.project, else '{DEFAULT_PROJECT}'].")
@click.option("--params", "params_path", default="params.yaml", show_default=True,
              type=click.Path(dir_okay=False, path_type=Path))
def push_command(images_table: Path, predictions_table: Path, uncertainty_table: Path, files_dir: Path,
                 project_title: str | None, params_path: Path) -> None:
    """Send the images of UNCERTAINTY_TABLE, with their predictions, to Label Studio.

    Creates the project if needed; imports a task per image, most uncertain first, each
    with the model's prediction; on a later run, only what changed. Reads
    LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY.
    """
    from thyrokit.annotate.studio.client import StudioError, connect
    from thyrokit.annotate.studio.push import DEFAULT_BATCH_SIZE, push, read_push_inputs
    from thyrokit.contract import ContractError

    params = studio_params(params_path)
    try:
        inputs = read_push_inputs(images_table, predictions_table, uncertainty_table)
        report = push(connect(), inputs, files_dir, project_title or params.get("project", DEFAULT_PROJECT),
                      int(params.get("batch_size", DEFAULT_BATCH_SIZE)))
    except (StudioError, ContractError) as error:
        fail(error)
    for line in report.problems:
        click.echo(line, err=True)
    counts = report.counts()
    click.echo(f"project {counts['project_id']}: {counts['tasks_created']} tasks created, "
               f"{counts['predictions_replaced']} predictions replaced, {counts['data_updated']} tasks updated, "
               f"{counts['unchanged']} unchanged, {counts['skipped']} skipped")


@click.command("pull")
@click.argument("images_table", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("out_table", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--project", "project_title", help=f"Project title [params studio.project, else '{DEFAULT_PROJECT}'].")
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write counts, annotator agreement and skipped items here as JSON.")
@click.option("--params", "params_path", default="params.yaml", show_default=True,
              type=click.Path(dir_okay=False, path_type=Path))
def pull_command(images_table: Path, out_table: Path, project_title: str | None, report_path: Path | None,
                 params_path: Path) -> None:
    """Export the human annotations into OUT_TABLE (nodules contract), masks/ and labelled_images beside it.

    Only images of IMAGES_TABLE are kept. Nothing is written unless the whole export
    was read. Reads LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY.
    """
    from thyrokit.annotate.studio.client import StudioError, connect, export_annotated, find_project
    from thyrokit.annotate.studio.pull import PullReport, pull_tables, write_report
    from thyrokit.contract import IMAGES, ContractError, read_table

    params = studio_params(params_path)
    try:
        images = read_table(images_table, IMAGES)
        studio = connect()
        tasks = export_annotated(studio, find_project(studio, project_title or params.get("project", DEFAULT_PROJECT)))
    except (StudioError, ContractError) as error:
        fail(error)
    sizes = {row[0]: (row[1], row[2]) for row in images.select("image_id", "height", "width").iter_rows()}
    report = PullReport()
    pull_tables(tasks, sizes, out_table, report)
    if report_path is not None:
        write_report(report, report_path)
    for line in report.problems:
        click.echo(line, err=True)
    click.echo(json.dumps(report.counts, sort_keys=True))
