"""The official OpenAI Python SDK's Responses API against a real `sluice serve`.

`client.responses.create` (plain and streamed, through the SDK's strict stream accumulator),
`retrieve`, `input_items.list`, `delete`, a `previous_response_id` chain, the cache and stored
responses' owners run against the session's gateway (built-in mock provider, translated from
Chat Completions). The function tool round trip needs an upstream that calls tools: this
module starts a small Chat-Completions-only fake upstream and a second gateway in front of it.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import tempfile
import threading
import time
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import openai
import pytest

from conftest import LISTEN_LINE, START_TIMEOUT_S, _read_stdout, _stop, _wait_ready, sluice_binary

if TYPE_CHECKING:
    from conftest import Sluice

MOCK_PREFIX = "This is a mock answer, not a real model. You said: "
FAKE_KEY = "sk-sluice-responses-e2e"


# --- a Chat-Completions-only upstream that calls tools ----------------------------------------


class FakeChat(BaseHTTPRequestHandler):
    """`POST /v1/chat/completions`: with tools and no tool result yet, calls the first tool with
    `{"q": <last user text>}`; otherwise answers `You said: <last user> [<n> messages]` or
    `Tool said: <tool result>`. Streams when asked. Every body is recorded."""

    calls: list[dict] = []

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        FakeChat.calls.append(body)
        messages = body["messages"]
        last = messages[-1]
        user = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        if body.get("tools") and last["role"] != "tool":
            name = body["tools"][0]["function"]["name"]
            message = {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_e2e", "type": "function", "function": {"name": name, "arguments": json.dumps({"q": user})}}]}
            finish = "tool_calls"
        else:
            text = f"Tool said: {last['content']}" if last["role"] == "tool" else f"You said: {user} [{len(messages)} messages]"
            message = {"role": "assistant", "content": text}
            finish = "stop"
        usage = {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}
        base = {"id": "chatcmpl-e2e", "created": 1_700_000_000, "model": body["model"]}
        if not body.get("stream"):
            out = {**base, "object": "chat.completion",
                   "choices": [{"index": 0, "message": message, "finish_reason": finish}], "usage": usage}
            data = json.dumps(out).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        chunk = {**base, "object": "chat.completion.chunk"}
        deltas = [{"role": "assistant", "content": ""}]
        if message.get("tool_calls"):
            call = message["tool_calls"][0]
            args = call["function"]["arguments"]
            deltas.append({"tool_calls": [{"index": 0, "id": call["id"], "type": "function",
                                           "function": {"name": call["function"]["name"], "arguments": ""}}]})
            for piece in (args[: len(args) // 2], args[len(args) // 2:]):
                deltas.append({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
        else:
            words = message["content"].split(" ")
            deltas += [{"content": w + (" " if i < len(words) - 1 else "")} for i, w in enumerate(words)]
        frames = [{**chunk, "choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas]
        frames.append({**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
        if (body.get("stream_options") or {}).get("include_usage"):
            frames.append({**chunk, "choices": [], "usage": usage})
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.end_headers()
        for f in frames:
            self.wfile.write(f"data: {json.dumps(f)}\n\n".encode())
        self.wfile.write(b"data: [DONE]\n\n")


@pytest.fixture(scope="module")
def tool_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A second gateway whose group `fake-tool` is the fake above; yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeChat)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    workdir = tmp_path_factory.mktemp("sluice-responses")
    config = workdir / "config.yaml"
    config.write_text(
        "model_list:\n"
        "  - model_name: fake-tool\n"
        "    litellm_params:\n"
        "      model: openai/fake-tool\n"
        f"      api_base: http://127.0.0.1:{server.server_address[1]}/v1\n"
        "      api_key: sk-upstream\n"
        "general_settings:\n"
        f"  master_key: {FAKE_KEY}\n"
        "sluice:\n"
        f"  data_dir: {workdir / 'state'}\n"
        "  cache: {enabled: false}\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("SLUICE_CONFIG", "SLUICE_MASTER_KEY", "OPENAI_API_KEY")}
    log = tempfile.NamedTemporaryFile(prefix="sluice-responses-e2e-", suffix=".log", delete=False)
    proc = subprocess.Popen(
        [str(sluice_binary()), "serve", "--listen", "127.0.0.1:0", "--config", str(config)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, env=env, text=True, cwd=workdir,
    )
    log.close()
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_read_stdout, args=(proc, lines), daemon=True).start()
    deadline = time.monotonic() + START_TIMEOUT_S
    base_url = None
    try:
        while base_url is None:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            if line is None:
                raise RuntimeError(f"sluice exited: {Path(log.name).read_text()[-2000:]}")
            m = LISTEN_LINE.match(line)
            if m:
                base_url = m.group(1)
        _wait_ready(base_url, deadline)
        yield base_url
    finally:
        _stop(proc)
        server.shutdown()
        Path(log.name).unlink(missing_ok=True)


@pytest.fixture
def tools_client(tool_gateway: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{tool_gateway}/v1", api_key=FAKE_KEY, max_retries=0, timeout=30.0)


WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"], "additionalProperties": False},
    "strict": True,
}


# --- the session gateway (mock provider) ------------------------------------------------------


def test_create_returns_a_response_object(client: openai.OpenAI) -> None:
    prompt = "Name three primary colours."
    raw = client.responses.with_raw_response.create(model="mock", input=prompt, instructions="Be brief.")
    assert raw.status_code == 200
    assert raw.headers.get("x-sluice-route", "").startswith("mock")
    response = raw.parse()
    assert response.id.startswith("resp_")
    assert response.object == "response"
    assert response.status == "completed"
    assert response.model == "mock"
    assert response.instructions == "Be brief."
    assert response.output_text.endswith(MOCK_PREFIX + prompt)
    message = response.output[0]
    assert message.type == "message" and message.role == "assistant" and message.status == "completed"
    assert message.content[0].type == "output_text"
    assert response.usage.input_tokens > 0 and response.usage.output_tokens > 0
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens


def test_stream_events_through_the_sdk_accumulator(client: openai.OpenAI) -> None:
    prompt = "Tell me about rivers in two words."
    kinds: list[str] = []
    deltas: list[str] = []
    seqs: list[int] = []
    # The stream helper rebuilds the response from the events and refuses an inconsistent order.
    with client.responses.stream(model="mock", input=prompt) as stream:
        for event in stream:
            kinds.append(event.type)
            seqs.append(event.sequence_number)
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
        final = stream.get_final_response()
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added", "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done", "response.completed"]
    assert seqs == list(range(len(seqs)))
    assert "".join(deltas) == final.output_text
    assert final.output_text.endswith(MOCK_PREFIX + prompt)
    assert final.status == "completed"
    assert final.usage is not None and final.usage.total_tokens > 0

    # Plain `stream=True` gives the same events. The first answer is in the cache by now, and a
    # replayed hit is chunked its own way: ask the upstream again.
    events = list(
        client.responses.create(model="mock", input=prompt, stream=True, extra_headers={"cache-control": "no-cache"})
    )
    assert [e.type for e in events] == kinds


def test_previous_response_id_continues_the_conversation(client: openai.OpenAI) -> None:
    first = client.responses.create(model="mock", input="My favourite number is 7.")
    second = client.responses.create(model="mock", input="What is my favourite number?", previous_response_id=first.id)
    assert second.previous_response_id == first.id
    assert second.output_text.endswith(MOCK_PREFIX + "What is my favourite number?")
    items = client.responses.input_items.list(second.id, order="asc")
    texts = [item.content[0].text for item in items.data]
    assert texts[0] == "My favourite number is 7."
    assert texts[1] == first.output_text
    assert texts[2] == "What is my favourite number?"


def test_retrieve_list_items_and_delete(client: openai.OpenAI) -> None:
    created = client.responses.create(model="mock", input="Remember this.", metadata={"case": "retrieve"})
    got = client.responses.retrieve(created.id)
    assert got.id == created.id
    assert got.output_text == created.output_text
    assert got.metadata == {"case": "retrieve"}
    items = client.responses.input_items.list(created.id)
    assert [i.content[0].text for i in items.data] == ["Remember this."]
    client.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(created.id)


def test_store_false_cannot_be_continued(client: openai.OpenAI) -> None:
    first = client.responses.create(model="mock", input="Do not keep this.", store=False)
    with pytest.raises(openai.NotFoundError) as err:
        client.responses.create(model="mock", input="And now?", previous_response_id=first.id)
    assert err.value.body["code"] == "previous_response_not_found"
    assert err.value.body["param"] == "previous_response_id"


def test_second_identical_create_is_a_cache_hit(client: openai.OpenAI) -> None:
    question = f"What is the tallest mountain on Earth? {uuid.uuid4().hex[:6]}"
    a = client.responses.with_raw_response.create(model="mock", input=question)
    b = client.responses.with_raw_response.create(model="mock", input=question)
    assert a.headers.get("x-sluice-cache") == "miss"
    assert b.headers.get("x-sluice-cache", "").startswith("hit")
    assert a.parse().output_text == b.parse().output_text
    assert a.parse().id != b.parse().id


def test_another_key_cannot_read_a_stored_response(sluice: Sluice, client: openai.OpenAI) -> None:
    created = client.responses.create(model="mock", input="Private to the master key.")
    request = urllib.request.Request(
        f"{sluice.base_url}/admin/keys",
        data=json.dumps({"alias": f"responses-e2e-{uuid.uuid4().hex[:6]}"}).encode(),
        headers={"authorization": f"Bearer {sluice.key}", "content-type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as r:
        other_key = json.loads(r.read())["key"]
    other = sluice.client(key=other_key)
    with pytest.raises(openai.NotFoundError):
        other.responses.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        other.responses.create(model="mock", input="Continue it.", previous_response_id=created.id)
    assert client.responses.retrieve(created.id).id == created.id


def test_bad_input_is_a_bad_request_naming_the_field(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(model="mock", input=[{"role": "user", "content": "a"}, {"type": "nonsense"}])
    assert err.value.body["param"] == "input[1].type"


# --- a function tool round trip (second gateway, tool-calling fake upstream) ------------------


def test_function_tool_round_trip(tools_client: openai.OpenAI) -> None:
    first = tools_client.responses.create(model="fake-tool", input="Weather in Oslo?", tools=[WEATHER_TOOL])
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1
    call = calls[0]
    assert call.name == "get_weather"
    assert json.loads(call.arguments) == {"q": "Weather in Oslo?"}

    result = f"-3C in {json.loads(call.arguments)['q'].split()[-1].rstrip('?')}"
    second = tools_client.responses.create(
        model="fake-tool",
        previous_response_id=first.id,
        tools=[WEATHER_TOOL],
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": result}],
    )
    assert second.output_text == f"Tool said: {result}"
    sent = FakeChat.calls[-1]["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool"]
    assert sent[1]["tool_calls"][0]["id"] == call.call_id
    assert sent[2]["tool_call_id"] == call.call_id


def test_function_call_streams_as_argument_deltas(tools_client: openai.OpenAI) -> None:
    with tools_client.responses.stream(model="fake-tool", input="Weather in Lima?", tools=[WEATHER_TOOL]) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert "response.function_call_arguments.delta" in kinds
    assert "response.function_call_arguments.done" in kinds
    call = final.output[0]
    assert call.type == "function_call"
    assert json.loads(call.arguments) == {"q": "Weather in Lima?"}


def test_chain_reaches_a_chat_only_upstream_as_full_history(tools_client: openai.OpenAI) -> None:
    first = tools_client.responses.create(model="fake-tool", input="One.")
    second = tools_client.responses.create(model="fake-tool", input="Two.", previous_response_id=first.id)
    third = tools_client.responses.create(model="fake-tool", input="Three.", previous_response_id=second.id)
    assert third.output_text == "You said: Three. [5 messages]"
    assert tools_client.responses.retrieve(third.id).previous_response_id == second.id


def test_websocket_mode_two_turns_on_one_socket(client: openai.OpenAI) -> None:
    """`client.responses.connect()` (the SDK's WebSocket mode) against Sluice, unchanged."""
    finals = []
    with client.responses.connect() as conn:
        previous = None
        for prompt in ["My favourite colour is green.", "What is my favourite colour?"]:
            extra = {"previous_response_id": previous} if previous else {}
            conn.response.create(model="mock", input=prompt, **extra)
            deltas: list[str] = []
            for event in conn:
                if event.type == "response.output_text.delta":
                    deltas.append(event.delta)
                elif event.type == "error":
                    raise AssertionError(f"error event: {event}")
                elif event.type == "response.completed":
                    assert "".join(deltas) == event.response.output_text
                    finals.append(event.response)
                    previous = event.response.id
                    break
    assert len(finals) == 2
    assert finals[1].previous_response_id == finals[0].id
    assert finals[1].output_text.endswith(MOCK_PREFIX + "What is my favourite colour?")
    # The second turn saw the first one: its stored input holds the whole chain.
    items = client.responses.input_items.list(finals[1].id, order="asc")
    assert items.data[0].content[0].text == "My favourite colour is green."
