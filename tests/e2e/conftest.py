"""Fixtures for the end-to-end tests: one real `sluice` process for the whole session.

The binary is taken from $SLUICE_BIN, else $CARGO_TARGET_DIR/debug/sluice, else
<repo>/target/debug/sluice (scripts/test.sh builds it first). It is started with its built-in
config (model groups `mock`, `mock-slow`, `mock-embedding`; semantic cache on), an ephemeral
port and a master key, in a fresh temporary working directory (so its `./data/state` is new and
private to the run; `./models` links to the repository's), and is stopped (SIGTERM, then SIGKILL)
when the session ends.

The `client` fixture gives every test its own cache namespace (`x-sluice-cache-namespace`), so a
test never sees answers cached by another one.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import openai
import pytest

REPO = Path(__file__).resolve().parents[2]
MASTER_KEY = "sk-sluice-e2e-test-key"
LISTEN_LINE = re.compile(r"^sluice listening on (http://127\.0\.0\.1:\d+)\s*$")
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0

# Where the server's stderr goes; shown at the end of the run when a test failed.
_LOG_PATH: Path | None = None


def sluice_binary() -> Path:
    if os.environ.get("SLUICE_BIN"):
        return Path(os.environ["SLUICE_BIN"])
    target = Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target")
    if not target.is_absolute():
        target = REPO / target
    return target / "debug" / "sluice"


@dataclass(frozen=True)
class Sluice:
    """A running gateway."""

    base_url: str  # http://127.0.0.1:PORT
    key: str
    log: Path

    @property
    def api_base(self) -> str:
        return f"{self.base_url}/v1"

    def client(self, key: str | None = None, namespace: str | None = None) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=self.api_base,
            api_key=self.key if key is None else key,
            max_retries=0,
            timeout=30.0,
            default_headers={"x-sluice-cache-namespace": namespace} if namespace else None,
        )


def _tail(path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _read_stdout(proc: subprocess.Popen, lines: queue.Queue) -> None:
    # Keeps draining stdout for the life of the process so it can never block on a full pipe.
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.put(line)
    lines.put(None)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=STOP_TIMEOUT_S)


@pytest.fixture(scope="session")
def sluice(tmp_path_factory: pytest.TempPathFactory) -> Sluice:
    global _LOG_PATH
    binary = sluice_binary()
    if not binary.is_file():
        pytest.fail(
            f"sluice binary not found at {binary}: run `cargo build --bin sluice` or set SLUICE_BIN",
            pytrace=False,
        )

    env = dict(os.environ)
    env["SLUICE_MASTER_KEY"] = MASTER_KEY
    env.pop("SLUICE_CONFIG", None)  # clap reads --config from it: force the built-in config
    env.pop("OPENAI_API_KEY", None)  # would add real OpenAI model groups to the built-in config
    env.setdefault("RUST_LOG", "info")

    workdir = tmp_path_factory.mktemp("sluice-cwd")
    if (REPO / "models").is_dir():
        (workdir / "models").symlink_to(REPO / "models", target_is_directory=True)

    log_file = tempfile.NamedTemporaryFile(prefix="sluice-e2e-", suffix=".log", delete=False)
    _LOG_PATH = Path(log_file.name)
    proc = subprocess.Popen(
        [str(binary), "serve", "--listen", "127.0.0.1:0"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=log_file,
        env=env,
        text=True,
        cwd=workdir,
    )
    log_file.close()
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_read_stdout, args=(proc, lines), daemon=True).start()

    base_url = None
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        while base_url is None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"no 'sluice listening on' line within {START_TIMEOUT_S:.0f} s")
            try:
                line = lines.get(timeout=min(left, 0.5))
            except queue.Empty:
                continue
            if line is None:
                raise RuntimeError(f"sluice exited with status {proc.wait()} before listening")
            m = LISTEN_LINE.match(line)
            if m:
                base_url = m.group(1)
        _wait_ready(base_url, deadline)
    except Exception as e:  # noqa: BLE001 - report any start-up failure with the server log
        _stop(proc)
        pytest.fail(f"could not start {binary}: {e}\n--- sluice stderr ---\n{_tail(_LOG_PATH)}", pytrace=False)

    try:
        yield Sluice(base_url=base_url, key=MASTER_KEY, log=_LOG_PATH)
    finally:
        _stop(proc)


def _wait_ready(base_url: str, deadline: float) -> None:
    while True:
        try:
            with urllib.request.urlopen(f"{base_url}/health/readiness", timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("/health/readiness never answered 200")
        time.sleep(0.05)


@pytest.fixture
def namespace() -> str:
    """A cache namespace of this test's own."""
    return f"e2e-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def client(sluice: Sluice, namespace: str) -> openai.OpenAI:
    """An SDK client with the master key, in this test's cache namespace."""
    return sluice.client(namespace=namespace)


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # noqa: ARG001
    if _LOG_PATH is None:
        return
    if exitstatus != 0:
        terminalreporter.section("sluice stderr (last lines)")
        terminalreporter.write_line(_tail(_LOG_PATH))
        terminalreporter.write_line(f"full log: {_LOG_PATH}")
    else:
        _LOG_PATH.unlink(missing_ok=True)
