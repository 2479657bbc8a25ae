"""A real Label Studio server on 127.0.0.1 for the test session, and the tables to push to it.

A first start runs Label Studio's database migrations (30-90 s here); a restart on a
migrated data folder takes seconds. So the first session migrates a template home under
~/.cache/thyrokit/ls-test-template (kept between runs), and each session starts a copy
of it on a free port.
"""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest

from thyrokit.annotate.studio.server import (StudioHome, kill_server, prepare_home, server_url, start_server,
                                             stop_server, wait_until_ready)

TEMPLATE = Path.home() / ".cache" / "thyrokit" / "ls-test-template"
READY_MARK = ".migrated"
HOST = "127.0.0.1"


def free_port() -> int:
    """Return a TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def migrated_template() -> Path:
    """Return a Label Studio home whose database is migrated and has the admin user and token."""
    if (TEMPLATE / READY_MARK).is_file():
        return TEMPLATE
    shutil.rmtree(TEMPLATE, ignore_errors=True)
    home = prepare_home(TEMPLATE)
    port = free_port()
    process = start_server(home, HOST, port)
    try:
        wait_until_ready(server_url(HOST, port), process)
    finally:
        stop_server(process)
    (TEMPLATE / READY_MARK).write_text("migrated\n")
    return TEMPLATE


class RunningStudio:
    """A Label Studio server the tests may stop, kill and start again on the same home."""

    def __init__(self, home: StudioHome):
        self.home = home
        self.port = free_port()
        self.process = None

    @property
    def url(self) -> str:
        return server_url(HOST, self.port)

    @property
    def token(self) -> str:
        return self.home.token()

    def start(self) -> None:
        self.process = start_server(self.home, HOST, self.port)
        wait_until_ready(self.url, self.process)

    def stop(self) -> None:
        if self.process is not None:
            stop_server(self.process)

    def kill(self) -> None:
        if self.process is not None:
            kill_server(self.process)


@pytest.fixture(scope="session")
def studio_server(tmp_path_factory) -> RunningStudio:
    """A running Label Studio on 127.0.0.1 with a fresh copy of the migrated template home."""
    root = tmp_path_factory.mktemp("label-studio") / "home"
    shutil.copytree(migrated_template(), root, ignore=shutil.ignore_patterns(READY_MARK, "*.log"))
    server = RunningStudio(prepare_home(root))
    server.start()
    yield server
    server.stop()
