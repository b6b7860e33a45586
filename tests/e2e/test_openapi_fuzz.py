"""Schemathesis against a live Sluice: every operation of `/openapi.json`, a bounded number of
generated requests each (valid and invalid ones), with the master key.

Checks: no 5xx, every status code documented for the operation, the documented content type,
and the body valid against the documented schema. The fuzzer creates keys, flushes the cache and
rewrites the cache settings, so it runs against a private gateway started for this module (the
same binary and built-in config as the session one of conftest.py), never the shared one.
"""

from __future__ import annotations

import queue
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from conftest import LISTEN_LINE, MASTER_KEY, REPO, START_TIMEOUT_S, _read_stdout, _stop, _wait_ready, sluice_binary

MAX_EXAMPLES = 25
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def fuzz_gateway(tmp_path_factory: pytest.TempPathFactory):
    """A private gateway (built-in config: mock groups, semantic cache on) for this module."""
    import os

    binary = sluice_binary()
    if not binary.is_file():
        pytest.fail(f"sluice binary not found at {binary}", pytrace=False)
    env = dict(os.environ)
    env["SLUICE_MASTER_KEY"] = MASTER_KEY
    env.pop("SLUICE_CONFIG", None)
    env.pop("OPENAI_API_KEY", None)
    env["RUST_LOG"] = "warn"
    workdir = tmp_path_factory.mktemp("sluice-fuzz")
    if (REPO / "models").is_dir():
        (workdir / "models").symlink_to(REPO / "models", target_is_directory=True)
    log_path = workdir / "sluice.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [str(binary), "serve", "--listen", "127.0.0.1:0"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
            env=env,
            text=True,
            cwd=workdir,
        )
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_read_stdout, args=(proc, lines), daemon=True).start()
    deadline = time.monotonic() + START_TIMEOUT_S
    base_url = None
    try:
        while base_url is None:
            line = lines.get(timeout=max(deadline - time.monotonic(), 0.1))
            if line is None:
                raise RuntimeError(f"sluice exited with status {proc.wait()}")
            m = LISTEN_LINE.match(line)
            if m:
                base_url = m.group(1)
        _wait_ready(base_url, deadline)
    except Exception as e:  # noqa: BLE001 - report any start-up failure with the log
        _stop(proc)
        pytest.fail(f"could not start {binary}: {e}\n{Path(log_path).read_text()[-4000:]}", pytrace=False)
    try:
        yield base_url, log_path
    finally:
        _stop(proc)
        # A panic is a crash even when the client saw an answer.
        assert "panicked" not in log_path.read_text(errors="replace"), log_path.read_text()[-4000:]


@pytest.fixture(scope="module")
def api_schema(fuzz_gateway):
    base_url, _ = fuzz_gateway
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    schema.config.base_url = base_url
    schema.config.generation.update(
        modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
        max_examples=MAX_EXAMPLES,
        deterministic=True,
    )
    return schema


def test_document_is_public_openapi_3_1(fuzz_gateway):
    base_url, _ = fuzz_gateway
    r = requests.get(f"{base_url}/openapi.json", timeout=10)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    doc = r.json()
    assert doc["openapi"] == "3.1.0"
    assert set(doc["components"]["securitySchemes"]) == {"bearer", "api_key"}
    # Every route family is documented.
    for path in ["/v1/chat/completions", "/v1/embeddings", "/v1/messages", "/v1/responses/{id}/input_items",
                 "/v1/models", "/admin/cache/flush", "/admin/keys/{id}", "/admin/spend", "/admin/audit",
                 "/utils/token_counter", "/health/readiness", "/metrics"]:
        assert path in doc["paths"], path


def _concrete(path: str) -> str:
    return path.replace("{id}", "x1").replace("{model}", "mock")


def test_undocumented_methods_are_405_and_secured_operations_need_a_key(fuzz_gateway):
    """What the fuzzer's per-operation runs cannot see: methods the document does not list for a
    path are refused with 405 (not a 404 as if the path did not exist), and every operation that
    declares a security requirement answers 401 without a key."""
    base_url, _ = fuzz_gateway
    doc = requests.get(f"{base_url}/openapi.json", timeout=10).json()
    auth = {"Authorization": f"Bearer {MASTER_KEY}"}
    for path, ops in doc["paths"].items():
        url = base_url + _concrete(path)
        for method in {"get", "post", "put", "patch", "delete"} - set(ops):
            r = requests.request(method, url, headers=auth, timeout=30)
            assert r.status_code == 405, f"{method.upper()} {path}: {r.status_code} {r.text}"
            error = r.json()["error"]  # OpenAI's shape; Anthropic's on /v1/messages
            assert error.get("code", error.get("type")) in ("method_not_allowed", "invalid_request_error"), error
        for method, op in ops.items():
            if not op.get("security"):
                continue
            r = requests.request(method, url, json={} if method in ("post", "put", "patch") else None, timeout=30)
            # A plain GET on the WebSocket-only /v1/responses is refused before any key is read.
            expected = 405 if (method, path) == ("get", "/v1/responses") else 401
            assert r.status_code == expected, f"{method.upper()} {path} without a key: {r.status_code} {r.text}"


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
def test_openapi_operations_conform(api_schema, mode):
    """Every operation, MAX_EXAMPLES generated requests each, derandomized.

    Driven through `APIOperation.as_strategy` rather than `schemathesis.pytest`, whose plugin
    does not run on the pinned pytest 9.2 (it sets `Function._nodeid`, gone in 9.2).
    """
    failures: list[str] = []
    seen: dict[str, Counter] = {}
    for result in api_schema.get_all_operations():
        op = result.ok()
        statuses = seen.setdefault(op.label, Counter())

        def make_check(statuses=statuses):
            # A new function per run: hypothesis attaches its settings to the function.
            def check(case):
                response = case.call(headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=30)
                statuses[response.status_code] += 1
                case.validate_response(response, checks=CHECKS)

            return check

        common = dict(deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
        try:
            fuzz = settings(max_examples=MAX_EXAMPLES, phases=[Phase.generate], **common)
            given(case=op.as_strategy(generation_mode=mode))(fuzz(make_check()))()
            # The documented examples (a request that succeeds) are sent too.
            for strategy in api_schema.get_strategies_from_examples(op):
                one = settings(max_examples=1, phases=[Phase.generate], **common)
                given(case=strategy)(one(make_check()))()
        except Unsatisfiable:
            # Nothing to break (no parameters, no body): the positive pass covers it.
            assert mode == GenerationMode.NEGATIVE, op.label
        except Exception as e:  # noqa: BLE001 - collect every operation's failure, then report all
            failures.append(f"{op.label}: {e}")
    summary = "\n".join(f"  {label}: {dict(c)}" for label, c in seen.items())
    print(f"\n{mode} statuses per operation:\n{summary}")
    assert not failures, "\n\n".join(failures)
