"""A local Label Studio server: its home folder, admin user, API token, start and stop.

Everything Label Studio keeps lives under one home folder: ``data/`` (its database
and uploads), ``files/`` (the de-identified images it serves to annotators), the admin
password and the API token (each in a file readable by the owner only). The token and
password are made once per home, so a restart on the same home keeps working with the
same ``LABEL_STUDIO_API_KEY``. Neither is ever printed: only where the files are.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

ADMIN_USER = "admin@example.org"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
# A first start runs the database migrations (30-90 s on 2 busy cores); a restart takes seconds.
START_TIMEOUT_S = 300.0


class StudioServerError(RuntimeError):
    """Label Studio could not be started or did not become ready."""


@dataclass(frozen=True)
class StudioHome:
    """The folder holding one Label Studio instance's database, served files and credentials."""

    root: Path

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def files_dir(self) -> Path:
        """Document root of Label Studio's local file serving; `push` writes images under it."""
        return self.root / "files"

    @property
    def token_file(self) -> Path:
        return self.root / "api_token"

    @property
    def password_file(self) -> Path:
        return self.root / "admin_password"

    @property
    def log_file(self) -> Path:
        return self.root / "label_studio.log"

    def token(self) -> str:
        """Return the API token of this home's admin user."""
        return self.token_file.read_text().strip()


def prepare_home(root: str | os.PathLike) -> StudioHome:
    """Create the home folders, and the API token and admin password files if absent."""
    home = StudioHome(Path(root).resolve())
    for folder in (home.root, home.data_dir, home.files_dir):
        folder.mkdir(parents=True, exist_ok=True)
    _write_private(home.token_file, secrets.token_hex(20))
    _write_private(home.password_file, secrets.token_urlsafe(18))
    return home


def _write_private(path: Path, value: str) -> None:
    """Write `value` to a new owner-only file; leave an existing file alone."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")


def server_env(home: StudioHome, base: dict[str, str] | None = None) -> dict[str, str]:
    """Return the environment that runs Label Studio on `home` without touching anything else."""
    env = dict(os.environ if base is None else base)
    env.update({
        # Without it Label Studio writes to the home folder, even for --help.
        "LABEL_STUDIO_BASE_DATA_DIR": str(home.data_dir),
        "LATEST_VERSION_CHECK": "false",  # no call out to the internet at start
        "LABEL_STUDIO_USERNAME": ADMIN_USER,
        "LABEL_STUDIO_PASSWORD": home.password_file.read_text().strip(),
        # A fixed token needs legacy tokens on; it is set once, at the first start.
        "LABEL_STUDIO_USER_TOKEN": home.token(),
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
        "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
        "LOCAL_FILES_SERVING_ENABLED": "true",
        "LOCAL_FILES_DOCUMENT_ROOT": str(home.files_dir),
    })
    return env


def label_studio_command() -> str:
    """Return the path of the `label-studio` console script of this Python environment."""
    beside = Path(sys.executable).parent / "label-studio"
    found = str(beside) if beside.is_file() else shutil.which("label-studio")
    if not found:
        raise StudioServerError("the `label-studio` command is not installed in this environment")
    return found


def start_server(home: StudioHome, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> subprocess.Popen:
    """Start Label Studio on `home` in its own process group, logging to the home's log file."""
    command = [label_studio_command(), "start", "--host", host, "--port", str(port), "--no-browser"]
    with open(home.log_file, "ab") as log:
        return subprocess.Popen(command, env=server_env(home), stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def server_url(host: str, port: int) -> str:
    """Return the base URL of a server on `host`:`port`."""
    return f"http://{host}:{port}"


def wait_until_ready(url: str, process: subprocess.Popen | None = None,
                     timeout: float = START_TIMEOUT_S) -> None:
    """Return once `url`/health answers 200; raise StudioServerError if the process dies or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise StudioServerError(f"Label Studio exited with code {process.returncode} before it was ready")
        try:
            if httpx.get(f"{url}/health", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise StudioServerError(f"Label Studio at {url} was not ready after {timeout:.0f} s")


def stop_server(process: subprocess.Popen, timeout: float = 20.0) -> None:
    """Stop a server started by :func:`start_server` (its whole process group)."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def kill_server(process: subprocess.Popen) -> None:
    """Kill a server at once, as a crash or a pulled plug would."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
