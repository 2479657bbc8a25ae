"""The connection to Label Studio: who to call, clear errors, no silent repeats of writes.

The client reads ``LABEL_STUDIO_URL`` and ``LABEL_STUDIO_API_KEY``. Every call goes
through :func:`studio_call`, which turns the SDK's and httpx's exceptions into one
:class:`StudioError` line that names the server and the request, never the token.
The SDK retries 409, 429 and 5xx answers twice by default: right for reads, wrong for
an import that may have been committed before the answer was lost, so writes pass
:data:`NO_RETRY`.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from label_studio_sdk import LabelStudio
from label_studio_sdk.core.api_error import ApiError

URL_ENV = "LABEL_STUDIO_URL"
API_KEY_ENV = "LABEL_STUDIO_API_KEY"
NO_RETRY = {"max_retries": 0}
TASK_PAGE_SIZE = 500
BODY_CHARS = 200


class StudioError(RuntimeError):
    """Label Studio could not be reached, refused us, or answered with an error."""


@dataclass
class Studio:
    """A connected Label Studio client and the URL it talks to."""

    url: str
    client: LabelStudio


def connect(url: str | None = None, api_key: str | None = None, timeout: float = 60.0) -> Studio:
    """Return a client for `url` (default ``LABEL_STUDIO_URL``) that has checked its API key."""
    url = (url or os.environ.get(URL_ENV) or "").rstrip("/")
    api_key = api_key or os.environ.get(API_KEY_ENV)
    if not url:
        raise StudioError(f"no Label Studio URL: set {URL_ENV} (e.g. http://127.0.0.1:8080)")
    if not api_key:
        raise StudioError(f"no Label Studio API key: set {API_KEY_ENV} (see `thyrokit annotate server`)")
    studio = Studio(url, LabelStudio(base_url=url, api_key=api_key, timeout=timeout))
    with studio_call(studio, "check the API key"):
        studio.client.users.whoami()
    return studio


@contextlib.contextmanager
def studio_call(studio: Studio, what: str) -> Iterator[None]:
    """Raise StudioError, one line naming the server and `what`, for any failure inside."""
    try:
        yield
    except ApiError as error:
        code = error.status_code
        if code in (401, 403):
            raise StudioError(f"Label Studio at {studio.url} refused the API key (HTTP {code}) "
                              f"while trying to {what}: check {API_KEY_ENV}") from None
        body = " ".join(str(error.body).split())[:BODY_CHARS]
        raise StudioError(f"Label Studio at {studio.url} answered HTTP {code} while trying to {what}: "
                          f"{body}") from None
    except httpx.TimeoutException:
        raise StudioError(f"Label Studio at {studio.url} did not answer in time while trying to {what}") from None
    except httpx.TransportError as error:
        raise StudioError(f"cannot reach Label Studio at {studio.url} while trying to {what} "
                          f"({type(error).__name__}); is it running? (`thyrokit annotate server`)") from None


def find_or_create_project(studio: Studio, title: str, label_config: str, settings: dict[str, Any]) -> int:
    """Return the id of the project called `title`, created or updated to `label_config` and `settings`."""
    with studio_call(studio, f"find project '{title}'"):
        found = [project for project in studio.client.projects.list(title=title) if project.title == title]
    if len(found) > 1:
        raise StudioError(f"Label Studio at {studio.url} has {len(found)} projects called '{title}'; "
                          f"rename all but one")
    if not found:
        with studio_call(studio, f"create project '{title}'"):
            return studio.client.projects.create(title=title, label_config=label_config, **settings,
                                                 request_options=NO_RETRY).id
    set_project(studio, found[0].id, label_config=label_config, **settings)
    return found[0].id


def set_project(studio: Studio, project_id: int, **settings: Any) -> None:
    """Update the project's settings that differ from `settings`."""
    with studio_call(studio, "read the project's settings"):
        project = studio.client.projects.get(project_id)
    changed = {name: value for name, value in settings.items() if getattr(project, name, None) != value}
    if changed:
        with studio_call(studio, f"update the project's {', '.join(sorted(changed))}"):
            studio.client.projects.update(project_id, **changed)


def find_project(studio: Studio, title: str) -> int:
    """Return the id of the project called `title`; raise StudioError if there is none."""
    with studio_call(studio, f"find project '{title}'"):
        found = [project.id for project in studio.client.projects.list(title=title) if project.title == title]
    if len(found) != 1:
        raise StudioError(f"Label Studio at {studio.url} has {len(found)} projects called '{title}', "
                          f"expected one")
    return found[0]


def ensure_local_storage(studio: Studio, project_id: int, folder: Path) -> None:
    """Let the project's annotators see files under `folder` (a local storage, never synced)."""
    path = str(folder.resolve())
    with studio_call(studio, "list the project's local storages"):
        storages = studio.client.import_storage.local.list(project=project_id)
    if any(storage.path == path for storage in storages):
        return
    with studio_call(studio, "add a local storage for the served images"):
        studio.client.import_storage.local.create(project=project_id, path=path, title="thyrokit images",
                                                  use_blob_urls=False, request_options=NO_RETRY)


def list_tasks(studio: Studio, project_id: int) -> list[dict[str, Any]]:
    """Return every task of the project with its data and predictions, as plain dicts."""
    with studio_call(studio, "list the project's tasks"):
        pager = studio.client.tasks.list(project=project_id, fields="all", page_size=TASK_PAGE_SIZE)
        return [task.dict() for task in pager]


def export_annotated(studio: Studio, project_id: int) -> list[dict[str, Any]]:
    """Return the project's annotated tasks in Label Studio's JSON export format."""
    with studio_call(studio, "export the project's annotations"):
        data = b"".join(studio.client.projects.exports.download_sync(project_id, export_type="JSON",
                                                                     download_all_tasks=False))
    try:
        return json.loads(data)
    except ValueError:
        raise StudioError(f"Label Studio at {studio.url} sent an export that is not JSON") from None
