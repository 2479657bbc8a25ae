"""`thyrokit annotate server`: a Label Studio home with private credentials, started and stopped."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from studio_server import READY_MARK, free_port, migrated_template
from thyrokit.annotate.studio.server import prepare_home, server_env

FILES = "LOCAL_FILES_DOCUMENT_ROOT="


def test_a_home_gets_a_private_token_and_password_once(tmp_path):
    home = prepare_home(tmp_path / "ls")
    token = home.token()
    assert len(token) == 40 and int(token, 16) >= 0
    for secret_file in (home.token_file, home.password_file):
        assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert prepare_home(tmp_path / "ls").token() == token  # a restart keeps the key users exported


def test_the_server_environment_keeps_label_studio_inside_its_home(tmp_path):
    home = prepare_home(tmp_path / "ls")
    env = server_env(home, base={"PATH": "/usr/bin"})
    assert env["LABEL_STUDIO_BASE_DATA_DIR"] == str(home.data_dir)
    assert env["LOCAL_FILES_DOCUMENT_ROOT"] == str(home.files_dir)
    assert env["LATEST_VERSION_CHECK"] == "false" and env["LABEL_STUDIO_USER_TOKEN"] == home.token()
    assert "LABEL_STUDIO_USER_TOKEN" not in os.environ


@pytest.mark.slow
def test_server_command_prints_how_to_connect_without_the_token(tmp_path):
    root = tmp_path / "home"
    shutil.copytree(migrated_template(), root, ignore=shutil.ignore_patterns(READY_MARK, "*.log"))
    port = free_port()
    command = [str(Path(sys.executable).parent / "thyrokit"), "annotate", "server", str(root), "--port", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not any(FILES in line for line in lines):
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
        output = "".join(lines)
        assert f"running at http://127.0.0.1:{port}" in output, output
        assert f"LABEL_STUDIO_API_KEY=$(cat {root / 'api_token'})" in output
        assert prepare_home(root).token() not in output
        projects = httpx.get(f"http://127.0.0.1:{port}/api/projects",
                             headers={"Authorization": f"Token {prepare_home(root).token()}"})
        assert projects.status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        finally:
            process.kill()
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)

