"""The official OpenAI Python SDK against a real `sluice serve` (built-in mock config).

What a user of the OpenAI API would do, pointed at Sluice: chat (plain and streaming),
embeddings, the model list, the errors the SDK maps to its exception classes, and the cache
as seen from a client (headers, exact and semantic hits, replay as a stream, cache controls).
Each test has its own cache namespace (see conftest.py), so it starts from an empty cache.
"""

from __future__ import annotations

import json
import math
import time
import urllib.error
import urllib.request
import uuid

from typing import TYPE_CHECKING

import openai
import pytest

if TYPE_CHECKING:
    from conftest import Sluice

MOCK_PREFIX = "This is a mock answer, not a real model. You said: "
# Neither read nor write the cache: the request goes to the upstream (the mock) every time.
UPSTREAM_ONLY = {"cache-control": "no-cache, no-store"}


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def mock_answer(prompt: str) -> str:
    return f"{MOCK_PREFIX}{prompt}"


# --- chat, non-streaming -----------------------------------------------------------------------


def test_chat_completion_echoes_prompt_with_usage_and_headers(client: openai.OpenAI) -> None:
    prompt = "What is the capital of France?"
    raw = client.chat.completions.with_raw_response.create(model="mock", messages=user(prompt))

    assert raw.status_code == 200
    assert raw.headers.get("x-sluice-route", "").startswith("mock"), "names the deployment that answered"
    assert raw.headers.get("x-request-id"), "every response carries x-request-id"
    assert raw.headers.get("x-sluice-cache") == "miss"
    assert raw.headers.get("content-type", "").startswith("application/json")

    completion = raw.parse()
    assert completion.object == "chat.completion"
    assert completion.id
    assert len(completion.choices) == 1
    choice = completion.choices[0]
    assert choice.index == 0
    assert choice.finish_reason == "stop"
    assert choice.message.role == "assistant"
    assert prompt in choice.message.content
    assert choice.message.content.endswith(mock_answer(prompt))

    usage = completion.usage
    assert usage is not None
    assert usage.prompt_tokens > 0
    assert usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_chat_answers_the_last_user_message(client: openai.OpenAI) -> None:
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "first answer"},
        {"role": "user", "content": "second question"},
    ]
    completion = client.chat.completions.create(model="mock", messages=messages)
    content = completion.choices[0].message.content
    assert content.endswith(mock_answer("second question"))
    assert "first question" not in content


def test_chat_is_deterministic(client: openai.OpenAI) -> None:
    a = client.chat.completions.with_raw_response.create(
        model="mock", messages=user("same prompt"), extra_headers=UPSTREAM_ONLY
    )
    b = client.chat.completions.with_raw_response.create(
        model="mock", messages=user("same prompt"), extra_headers=UPSTREAM_ONLY
    )
    assert a.headers["x-sluice-cache"] == b.headers["x-sluice-cache"] == "bypass"
    a, b = a.parse(), b.parse()
    assert a.choices[0].message.content == b.choices[0].message.content
    assert a.id != b.id, "each completion gets its own id"


def test_client_request_id_is_echoed(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="mock", messages=user("id please"), extra_headers={"x-request-id": "e2e-req-42"}
    )
    assert raw.headers.get("x-request-id") == "e2e-req-42"


def test_request_ids_differ_between_requests(client: openai.OpenAI) -> None:
    ids = {
        client.chat.completions.with_raw_response.create(model="mock", messages=user("x")).headers[
            "x-request-id"
        ]
        for _ in range(3)
    }
    assert len(ids) == 3


def test_unknown_fields_are_accepted(client: openai.OpenAI) -> None:
    # Parameters Sluice does not interpret must not be refused (they pass through to providers).
    completion = client.chat.completions.create(
        model="mock",
        messages=user("tuned"),
        temperature=0.2,
        max_tokens=50,
        seed=7,
        user="e2e",
        extra_body={"some_vendor_field": {"nested": True}},
    )
    assert completion.choices[0].message.content.endswith(mock_answer("tuned"))


# --- chat, streaming ---------------------------------------------------------------------------


def test_stream_deltas_concatenate_to_the_non_streaming_answer(client: openai.OpenAI) -> None:
    prompt = "Tell me a story about a sluice gate."
    expected = (
        client.chat.completions.create(model="mock", messages=user(prompt), extra_headers=UPSTREAM_ONLY)
        .choices[0]
        .message.content
    )

    chunks = list(
        client.chat.completions.create(
            model="mock", messages=user(prompt), stream=True, extra_headers=UPSTREAM_ONLY
        )
    )
    assert len(chunks) > 2, "the answer arrives in several chunks"
    for c in chunks:
        assert c.object == "chat.completion.chunk"
        assert c.usage is None, "no usage chunk unless stream_options.include_usage is set"
    assert len({c.id for c in chunks}) == 1, "all chunks of one completion share its id"

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == expected
    assert chunks[0].choices[0].delta.role == "assistant"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]


def test_stream_include_usage_puts_usage_in_the_last_chunk(client: openai.OpenAI) -> None:
    prompt = "count my tokens"
    chunks = list(
        client.chat.completions.create(
            model="mock",
            messages=user(prompt),
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    last = chunks[-1]
    assert last.usage is not None
    assert last.choices == []
    assert last.usage.prompt_tokens > 0
    assert last.usage.completion_tokens > 0
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens
    assert all(c.usage is None for c in chunks[:-1])
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.endswith(mock_answer(prompt))


def test_stream_raw_response_headers(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="mock", messages=user("headers while streaming"), stream=True
    )
    assert raw.headers.get("content-type", "").startswith("text/event-stream")
    assert raw.headers.get("x-sluice-route", "").startswith("mock")
    assert raw.headers.get("x-request-id")
    assert raw.headers.get("x-sluice-cache") == "miss"
    text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
    assert text.endswith(mock_answer("headers while streaming"))


def test_stream_is_forwarded_as_it_arrives(client: openai.OpenAI) -> None:
    # mock-slow waits 500 ms, then sends a chunk every 50 ms: the first content must reach the
    # client well before the last one, i.e. the gateway does not buffer the whole answer.
    started = time.monotonic()
    arrivals = []
    stream = client.chat.completions.create(
        model="mock-slow", messages=user("one two three four five"), stream=True, extra_headers=UPSTREAM_ONLY
    )
    for c in stream:
        if c.choices and c.choices[0].delta.content:
            arrivals.append(time.monotonic() - started)
    assert len(arrivals) >= 5
    assert arrivals[0] >= 0.4, "mock-slow's latency applies before the first chunk"
    assert arrivals[-1] - arrivals[0] >= 0.2, f"chunks arrived together: {arrivals}"


def test_client_can_stop_reading_a_stream_early(client: openai.OpenAI, sluice: Sluice) -> None:
    stream = client.chat.completions.create(model="mock-slow", messages=user("long " * 40), stream=True)
    next(iter(stream))
    stream.close()
    # The gateway is still healthy afterwards.
    assert client.chat.completions.create(model="mock", messages=user("after")).choices[0].message.content


# --- embeddings --------------------------------------------------------------------------------


def test_embeddings_default_dimension(client: openai.OpenAI) -> None:
    res = client.embeddings.create(model="mock-embedding", input="hello world")
    assert res.object == "list"
    assert len(res.data) == 1
    vec = res.data[0].embedding
    assert res.data[0].index == 0
    assert len(vec) == 256
    assert all(isinstance(x, float) for x in vec)
    assert math.isclose(math.sqrt(sum(x * x for x in vec)), 1.0, rel_tol=1e-3)
    assert res.usage.prompt_tokens > 0


def test_embeddings_dimensions_is_honoured(client: openai.OpenAI) -> None:
    res = client.embeddings.create(model="mock-embedding", input="hello world", dimensions=64)
    assert len(res.data[0].embedding) == 64


def test_embeddings_are_deterministic(client: openai.OpenAI) -> None:
    a = client.embeddings.create(model="mock-embedding", input="the same text").data[0].embedding
    b = client.embeddings.create(model="mock-embedding", input="the same text").data[0].embedding
    c = client.embeddings.create(model="mock-embedding", input="another text").data[0].embedding
    assert a == b
    assert a != c


def test_embeddings_batch_keeps_order(client: openai.OpenAI) -> None:
    texts = ["alpha", "beta", "gamma"]
    batch = client.embeddings.create(model="mock-embedding", input=texts)
    assert [d.index for d in batch.data] == [0, 1, 2]
    for text, item in zip(texts, batch.data):
        single = client.embeddings.create(model="mock-embedding", input=text).data[0].embedding
        assert item.embedding == single


# --- models ------------------------------------------------------------------------------------


def test_models_list_contains_the_builtin_groups(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    for name in ("mock", "mock-slow", "mock-embedding"):
        assert name in ids
    assert len(ids) == len(set(ids))


def test_models_retrieve(client: openai.OpenAI) -> None:
    m = client.models.retrieve("mock")
    assert m.id == "mock"
    assert m.object == "model"


def test_models_retrieve_unknown_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


# --- errors ------------------------------------------------------------------------------------


def test_wrong_key_raises_authentication_error(sluice: Sluice) -> None:
    bad = sluice.client(key="sk-wrong")
    with pytest.raises(openai.AuthenticationError) as exc:
        bad.chat.completions.create(model="mock", messages=user("hi"))
    assert exc.value.status_code == 401
    assert exc.value.code == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        bad.embeddings.create(model="mock-embedding", input="hi")
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()


def test_missing_key_is_401(sluice: Sluice) -> None:
    # The SDK always sends a key, so this one goes without the SDK.
    req = urllib.request.Request(
        f"{sluice.api_base}/chat/completions",
        data=json.dumps({"model": "mock", "messages": user("hi")}).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(req, timeout=10)
    assert exc.value.code == 401
    body = json.loads(exc.value.read())
    assert set(body["error"]) >= {"message", "type", "param", "code"}


def test_unknown_model_raises_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as exc:
        client.chat.completions.create(model="no-such-model", messages=user("hi"))
    assert exc.value.status_code == 404
    assert exc.value.code == "model_not_found"
    assert "no-such-model" in exc.value.message
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="no-such-model", input="hi")


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"messages": [{"role": "boss", "content": "x"}]}, id="unknown-role"),
        pytest.param({"messages": []}, id="no-messages"),
        pytest.param({"messages": [{"content": "x"}]}, id="message-without-role"),
        pytest.param({"messages": user("x"), "stream_options": {"include_usage": True}}, id="stream-options-without-stream"),
    ],
)
def test_malformed_chat_params_raise_bad_request(client: openai.OpenAI, kwargs: dict) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model="mock", **kwargs)
    assert exc.value.status_code == 400
    body = exc.value.body
    assert isinstance(body, dict) and body.get("type") == "invalid_request_error"


def test_malformed_embeddings_params_raise_bad_request(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model="mock-embedding", input=[])


def test_invalid_json_is_400(sluice: Sluice) -> None:
    req = urllib.request.Request(
        f"{sluice.api_base}/chat/completions",
        data=b"{not json",
        headers={"content-type": "application/json", "authorization": f"Bearer {sluice.key}"},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(req, timeout=10)
    assert exc.value.code == 400
    assert json.loads(exc.value.read())["error"]["type"] == "invalid_request_error"


# --- the cache, as a client sees it ------------------------------------------------------------


def chat_raw(client: openai.OpenAI, prompt: str, **kwargs):
    return client.chat.completions.with_raw_response.create(model="mock", messages=user(prompt), **kwargs)


def test_repeated_request_is_an_exact_hit(client: openai.OpenAI) -> None:
    first = chat_raw(client, "How do canal locks work?")
    second = chat_raw(client, "How do canal locks work?")
    assert first.headers["x-sluice-cache"] == "miss"
    assert second.headers["x-sluice-cache"] == "hit-exact"
    assert second.headers["x-sluice-route"] == "cache"
    assert second.headers.get("x-sluice-cache-entry")
    a, b = first.parse(), second.parse()
    assert b.choices[0].message.content == a.choices[0].message.content
    assert b.object == "chat.completion"
    assert b.usage is not None


def test_near_duplicate_is_a_semantic_hit(client: openai.OpenAI) -> None:
    # Same question, punctuation changed: the local embedding model finds the stored answer.
    first = chat_raw(client, "Explain how a sluice gate works, in detail.")
    second = chat_raw(client, "Explain how a sluice gate works in detail")
    assert first.headers["x-sluice-cache"] == "miss"
    assert second.headers["x-sluice-cache"] == "hit-semantic"
    similarity = float(second.headers["x-sluice-cache-similarity"])
    assert 0.0 < similarity <= 1.0
    assert second.parse().choices[0].message.content == first.parse().choices[0].message.content


def test_unrelated_question_is_a_miss(client: openai.OpenAI) -> None:
    chat_raw(client, "Explain how a sluice gate works, in detail.")
    other = chat_raw(client, "Give me a recipe for lemon cake.")
    assert other.headers["x-sluice-cache"] == "miss"
    assert other.parse().choices[0].message.content.endswith(mock_answer("Give me a recipe for lemon cake."))


def test_cached_answer_is_replayed_as_a_stream(client: openai.OpenAI) -> None:
    prompt = "What is a weir?"
    expected = chat_raw(client, prompt).parse().choices[0].message.content
    raw = chat_raw(client, prompt, stream=True, stream_options={"include_usage": True})
    assert raw.headers["x-sluice-cache"] == "hit-exact"
    assert raw.headers.get("content-type", "").startswith("text/event-stream")
    chunks = list(raw.parse())
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == expected
    assert chunks[-1].usage is not None and chunks[-1].choices == []


def test_streamed_answer_is_cached(client: openai.OpenAI) -> None:
    prompt = "Why do rivers meander?"
    streamed = "".join(
        c.choices[0].delta.content or ""
        for c in client.chat.completions.create(model="mock", messages=user(prompt), stream=True)
        if c.choices
    )
    # The write happens when the stream finishes; give it a moment.
    for _ in range(50):
        again = chat_raw(client, prompt)
        if again.headers["x-sluice-cache"] == "hit-exact":
            break
        time.sleep(0.1)
    assert again.headers["x-sluice-cache"] == "hit-exact"
    assert again.parse().choices[0].message.content == streamed


def test_no_cache_skips_the_lookup(client: openai.OpenAI) -> None:
    chat_raw(client, "What is a dam?")
    fresh = chat_raw(client, "What is a dam?", extra_headers={"cache-control": "no-cache"})
    assert fresh.headers["x-sluice-cache"] == "bypass"
    assert fresh.headers["x-sluice-route"].startswith("mock")


def test_no_store_keeps_the_answer_out(client: openai.OpenAI) -> None:
    chat_raw(client, "What is a spillway?", extra_headers={"cache-control": "no-store"})
    assert chat_raw(client, "What is a spillway?").headers["x-sluice-cache"] == "miss"


def test_litellm_cache_field_is_honoured(client: openai.OpenAI) -> None:
    chat_raw(client, "What is a levee?")
    fresh = chat_raw(client, "What is a levee?", extra_body={"cache": {"no-cache": True}})
    assert fresh.headers["x-sluice-cache"] == "bypass"


def test_namespaces_do_not_share_answers(sluice: Sluice) -> None:
    a = sluice.client(namespace="e2e-ns-a-" + uuid.uuid4().hex[:8])
    b = sluice.client(namespace="e2e-ns-b-" + uuid.uuid4().hex[:8])
    assert chat_raw(a, "What is a flood gate?").headers["x-sluice-cache"] == "miss"
    assert chat_raw(b, "What is a flood gate?").headers["x-sluice-cache"] == "miss"
    assert chat_raw(a, "What is a flood gate?").headers["x-sluice-cache"] == "hit-exact"


def test_bad_cache_control_value_is_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        chat_raw(client, "x", extra_headers={"x-sluice-cache-threshold": "2"})
    assert exc.value.param == "x-sluice-cache-threshold"


# --- health and metrics (no key needed) --------------------------------------------------------


@pytest.mark.parametrize("path", ["/health/liveliness", "/health/readiness"])
def test_health_endpoints(sluice: Sluice, path: str) -> None:
    with urllib.request.urlopen(f"{sluice.base_url}{path}", timeout=10) as r:
        assert r.status == 200


def test_metrics_count_requests(client: openai.OpenAI, sluice: Sluice) -> None:
    client.chat.completions.create(model="mock", messages=user("for the metrics"))
    with urllib.request.urlopen(f"{sluice.base_url}/metrics", timeout=10) as r:
        assert r.status == 200
        text = r.read().decode()
    assert "# TYPE" in text
    assert 'model_group="mock"' in text
