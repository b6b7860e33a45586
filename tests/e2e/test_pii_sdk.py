"""The PII guard seen from the `openai` SDK: a virtual key whose policy masks prompts, and one
whose policy blocks them, against the running gateway's built-in mock model (which echoes the
prompt, so what the upstream saw is visible in the answer once restored or not)."""

from __future__ import annotations

import json
import urllib.request
import uuid

import openai
import pytest

from conftest import Sluice


def make_key(sluice: Sluice, body: dict) -> str:
    req = urllib.request.Request(
        f"{sluice.base_url}/admin/keys",
        data=json.dumps(body).encode(),
        headers={"authorization": f"Bearer {sluice.key}", "content-type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 201
        return json.loads(r.read())["key"]


def test_masked_prompt_comes_back_with_the_callers_own_values(sluice: Sluice) -> None:
    key = make_key(sluice, {"alias": f"mask-{uuid.uuid4().hex[:6]}", "pii": {"prompts": "mask"}})
    client = sluice.client(key=key)
    prompt = f"My card is 4111 1111 1111 1111 and mail is jo{uuid.uuid4().hex[:6]}@example.com"
    r = client.chat.completions.create(model="mock", messages=[{"role": "user", "content": prompt}])
    text = r.choices[0].message.content
    # The mock echoes what it was sent; the caller reads its own values back.
    assert prompt in text
    # Streamed, the same.
    stream = client.chat.completions.create(
        model="mock", messages=[{"role": "user", "content": prompt}], stream=True
    )
    streamed = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert prompt in streamed


def test_blocked_prompt_raises_bad_request_naming_the_kind(sluice: Sluice) -> None:
    key = make_key(sluice, {"alias": f"block-{uuid.uuid4().hex[:6]}", "pii": {"prompts": "block"}})
    client = sluice.client(key=key)
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(
            model="mock", messages=[{"role": "user", "content": "SSN 123-45-6789 please"}]
        )
    body = exc.value.body
    assert body["type"] == "pii_detected"
    assert "ssn" in body["message"] and "123-45" not in body["message"]
