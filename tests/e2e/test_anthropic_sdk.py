"""The official Anthropic Python SDK against a real `sluice serve` (built-in mock config).

What a user of Anthropic's Messages API would do, pointed at Sluice's `/v1/messages`: create a
message (plain and streaming), send a tool-use history back, see the cache at work, and get
the errors the SDK maps to its exception classes. Each test has its own cache namespace.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anthropic
import pytest

if TYPE_CHECKING:
    from conftest import Sluice

MOCK_PREFIX = "This is a mock answer, not a real model. You said: "


def make_client(sluice: Sluice, namespace: str, key: str | None = None) -> anthropic.Anthropic:
    # The SDK appends /v1/messages to the base URL and sends the key as x-api-key.
    return anthropic.Anthropic(
        base_url=sluice.base_url,
        api_key=sluice.key if key is None else key,
        max_retries=0,
        timeout=30.0,
        default_headers={"x-sluice-cache-namespace": namespace},
    )


@pytest.fixture
def claude(sluice: Sluice, namespace: str) -> anthropic.Anthropic:
    return make_client(sluice, namespace)


def test_create_message_with_headers_and_usage(claude: anthropic.Anthropic) -> None:
    prompt = "What is the capital of France?"
    raw = claude.messages.with_raw_response.create(
        model="mock",
        max_tokens=128,
        system="Answer briefly.",
        messages=[{"role": "user", "content": prompt}],
    )
    assert raw.status_code == 200
    assert raw.headers.get("x-sluice-route", "").startswith("mock")
    assert raw.headers.get("x-sluice-cache") == "miss"
    assert raw.headers.get("x-request-id")

    message = raw.parse()
    assert message.type == "message"
    assert message.role == "assistant"
    assert message.id.startswith("msg_")
    assert message.stop_reason == "end_turn"
    assert len(message.content) == 1
    block = message.content[0]
    assert block.type == "text"
    assert block.text.endswith(MOCK_PREFIX + prompt)
    assert message.usage.input_tokens > 0
    assert message.usage.output_tokens > 0


def test_stream_text_and_final_message(claude: anthropic.Anthropic) -> None:
    prompt = "stream me some words"
    with claude.messages.stream(
        model="mock", max_tokens=128, messages=[{"role": "user", "content": prompt}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text.endswith(MOCK_PREFIX + prompt)
    assert final.stop_reason == "end_turn"
    assert final.content[0].text == text
    assert final.usage.output_tokens > 0


def test_tool_use_history_is_accepted(claude: anthropic.Anthropic) -> None:
    message = claude.messages.create(
        model="mock",
        max_tokens=64,
        tools=[
            {
                "name": "get_weather",
                "description": "Weather by city",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
            }
        ],
        tool_choice={"type": "auto"},
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "toolu_e2e", "name": "get_weather", "input": {"city": "Paris"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_e2e", "content": "18C"},
                    {"type": "text", "text": "Summarise that."},
                ],
            },
        ],
    )
    assert message.content[0].text.endswith(MOCK_PREFIX + "Summarise that.")


def test_second_identical_request_is_a_cache_hit(claude: anthropic.Anthropic) -> None:
    args = dict(model="mock", max_tokens=64, messages=[{"role": "user", "content": "cache me"}])
    first = claude.messages.with_raw_response.create(**args)
    second = claude.messages.with_raw_response.create(**args)
    assert first.headers.get("x-sluice-cache") == "miss"
    assert second.headers.get("x-sluice-cache") == "hit-exact"
    assert second.parse().content[0].text == first.parse().content[0].text
    # A cached answer replays as a stream too.
    with claude.messages.stream(**args) as stream:
        assert "".join(stream.text_stream) == first.parse().content[0].text


def test_errors_map_to_sdk_exceptions(sluice: Sluice, namespace: str) -> None:
    claude = make_client(sluice, namespace)
    with pytest.raises(anthropic.NotFoundError) as e:
        claude.messages.create(model="no-such-model", max_tokens=8, messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code == 404
    assert e.value.body["error"]["type"] == "not_found_error"

    with pytest.raises(anthropic.BadRequestError) as e:
        claude.messages.create(
            model="mock", max_tokens=8, messages=[{"role": "system", "content": "x"}]  # type: ignore[list-item]
        )
    assert e.value.body["error"]["type"] == "invalid_request_error"
    assert "messages[0].role" in e.value.body["error"]["message"]

    with pytest.raises(anthropic.AuthenticationError) as e:
        make_client(sluice, namespace, key="wrong-key").messages.create(
            model="mock", max_tokens=8, messages=[{"role": "user", "content": "x"}]
        )
    assert e.value.status_code == 401
