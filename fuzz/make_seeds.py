#!/usr/bin/env python3
"""Writes the hand-made seed inputs of each fuzz target into fuzz/corpus/<target>/seed-*.

Run from the repository root: python3 fuzz/make_seeds.py. The shapes follow the unit tests
and docs (chat, Responses and Messages bodies, Anthropic/Gemini/OpenAI streams, configs).
"""
import json
import os
import re
import struct

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")

PII = ("Mail jane.doe@example.com or call +1 (555) 123-4567; card 4111 1111 1111 1111, "
       "IBAN DE89 3704 0044 0532 0130 00, SSN 123-45-6789, host 10.1.2.3 and fe80::1, "
       "key sk-proj-abcdefghijklmnopqrstuvwxyz0123456789ABCD, EMP-123456, TCK0A1B2C3D.")


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    elif not isinstance(data, (bytes, bytearray)):
        data = json.dumps(data).encode()
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


TOOLS = [{"type": "function", "function": {"name": "weather", "description": "Weather in a city",
          "parameters": {"type": "object", "properties": {"city": {"type": "string", "format": "date-time"},
                                                          "days": {"type": "integer", "minimum": 1}},
                         "required": ["city"], "additionalProperties": False}}}]

chat = {
    "simple": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello"}]},
    "stream": {"model": "gpt-4o", "messages": [{"role": "system", "content": "Be brief."},
                                                {"role": "user", "content": "Hi"}],
               "stream": True, "stream_options": {"include_usage": True}, "user": "u-1",
               "cache": {"no-cache": True, "ttl": 60, "namespace": "team-a"}, "temperature": 0.2},
    "tools": {"model": "claude", "max_tokens": 100, "tools": TOOLS, "tool_choice": "auto",
              "parallel_tool_calls": False,
              "messages": [{"role": "user", "content": "Weather in Paris?"},
                           {"role": "assistant", "content": None, "tool_calls": [
                               {"id": "call_1", "type": "function",
                                "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}]},
                           {"role": "tool", "tool_call_id": "call_1", "content": "18C sunny"},
                           {"role": "user", "content": [{"type": "text", "text": "And tomorrow?"},
                                                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}]},
    "format": {"model": "gemini", "messages": [{"role": "developer", "content": "JSON only"},
                                                {"role": "user", "content": "List 3 colours"}],
               "response_format": {"type": "json_schema", "json_schema": {"name": "c", "strict": True,
                                   "schema": {"type": "object", "properties": {"c": {"type": "array", "items": {"type": "string", "enum": ["red", "blue"]}}}}}},
               "stop": ["\n\n"], "max_completion_tokens": 50, "n": 1, "seed": 7, "top_p": 0.9},
    "pii": {"model": "gpt-4o", "messages": [{"role": "user", "content": PII},
                                             {"role": "assistant", "content": "ok", "tool_calls": [
                                                 {"id": "c", "type": "function", "function": {"name": "send", "arguments": json.dumps({"to": "jane.doe@example.com"})}}]}]},
    "bad-role": {"model": "m", "messages": [{"role": "wizard", "content": 3}]},
    "bad-cache": {"model": "m", "messages": [{"role": "user", "content": "x"}], "cache": {"ttl": "soon"}},
}
for k, v in chat.items():
    write("chat_body", k, v)
write("chat_body", "not-json", b'{"model": "m", "messages": [')

responses = {
    "string": {"model": "gpt-4o", "input": "Tell me a joke", "instructions": "Be funny", "store": False},
    "items": {"model": "gpt-4o", "stream": True, "max_output_tokens": 200, "user": "u",
              "input": [{"role": "user", "content": [{"type": "input_text", "text": "Weather?"},
                                                      {"type": "input_image", "image_url": "https://x/y.png", "detail": "low"}]},
                        {"type": "function_call", "call_id": "call_1", "name": "weather", "arguments": "{\"city\":\"Paris\"}"},
                        {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
                        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "It is sunny"}]},
                        {"role": "developer", "content": "Use metric"}],
              "tools": [{"type": "function", "name": "weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}, "strict": True}],
              "tool_choice": {"type": "function", "name": "weather"},
              "text": {"format": {"type": "json_schema", "name": "w", "schema": {"type": "object"}, "strict": True}},
              "reasoning": {"effort": "low"}, "metadata": {"k": "v"}, "parallel_tool_calls": True},
    "hosted": {"model": "gpt-4o", "input": "search", "tools": [{"type": "web_search_preview"}], "tool_choice": "required"},
    "previous": {"model": "gpt-4o", "previous_response_id": "resp_123", "input": [{"role": "user", "content": PII}],
                 "cache": {"no-store": True}, "text": {"format": {"type": "json_object"}}},
}
for k, v in responses.items():
    write("responses_body", k, v)

messages = {
    "simple": {"model": "claude-3-5-sonnet", "max_tokens": 1024, "messages": [{"role": "user", "content": "Hello"}]},
    "full": {"model": "claude", "max_tokens": 300, "stream": True, "temperature": 0.5, "top_k": 5,
             "stop_sequences": ["END"], "metadata": {"user_id": "u-9"},
             "system": [{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}],
             "tools": [{"name": "weather", "description": "w", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
             "tool_choice": {"type": "tool", "name": "weather", "disable_parallel_tool_use": True},
             "thinking": {"type": "enabled", "budget_tokens": 1024},
             "messages": [
                 {"role": "user", "content": [{"type": "text", "text": "Weather in Paris? " + PII},
                                              {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}]},
                 {"role": "assistant", "content": [{"type": "thinking", "thinking": "hm", "signature": "s"},
                                                   {"type": "text", "text": "Checking"},
                                                   {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}}]},
                 {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "18C"}], "is_error": False}]},
             ]},
    "system-string": {"model": "claude", "max_tokens": 10, "system": "Be kind", "tool_choice": {"type": "auto"},
                      "messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                                   {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "x", "content": "plain"}]}],
                      "cache": {"namespace": "n"}},
    "zero-max": {"model": "claude", "max_tokens": 0, "messages": [{"role": "user", "content": "x"}]},
}
for k, v in messages.items():
    write("messages_body", k, v)


def sse_input(flags, body, cuts=(7, 1, 0, 13, 64)):
    if isinstance(body, str):
        body = body.encode()
    return bytes([flags, len(cuts)]) + bytes(cuts) + body


def openai_chunk(delta, finish=None, usage=None, choices=True):
    c = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o",
         "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}] if choices else []}
    if usage is not None:
        c["usage"] = usage
    return "data: " + json.dumps(c) + "\n\n"


OPENAI = (openai_chunk({"role": "assistant", "content": ""}) + ": keep-alive\n\n"
          + openai_chunk({"content": "Hello "}) + openai_chunk({"content": "jane@example.com"})
          + openai_chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "weather", "arguments": ""}}]})
          + openai_chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":"}}]})
          + openai_chunk({"tool_calls": [{"index": 0, "function": {"arguments": "\"Paris\"}"}}]})
          + openai_chunk({}, "tool_calls")
          + openai_chunk({}, usage={"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}, choices=False)
          + "data: [DONE]\n\n")
OPENAI_REFUSAL = (openai_chunk({"role": "assistant", "refusal": "No."}) + openai_chunk({}, "stop")
                  + "data: [DONE]\r\n\r\n")
OPENAI_ERROR = openai_chunk({"content": "partial"}) + 'data: {"error":{"message":"overloaded","type":"rate_limit_error","code":"rate_limit_exceeded"}}\n\n'


def ev(name, data):
    return "event: " + name + "\ndata: " + json.dumps(data) + "\n\n"


ANTHROPIC = (ev("message_start", {"type": "message_start", "message": {"id": "msg_01", "type": "message", "role": "assistant", "content": [], "model": "claude-x", "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 25, "output_tokens": 1, "cache_read_input_tokens": 5}}})
             + ev("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}})
             + ev("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Let me think"}})
             + ev("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "sig"}})
             + ev("content_block_stop", {"type": "content_block_stop", "index": 0})
             + ev("content_block_start", {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}})
             + ev("ping", {"type": "ping"})
             + ev("content_block_delta", {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Checking the weather."}})
             + ev("content_block_stop", {"type": "content_block_stop", "index": 1})
             + ev("content_block_start", {"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "id": "toolu_01", "name": "weather", "input": {}}})
             + ev("content_block_delta", {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "{\"city\": \"Pa"}})
             + ev("content_block_delta", {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "ris\"}"}})
             + ev("content_block_stop", {"type": "content_block_stop", "index": 2})
             + ev("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None}, "usage": {"output_tokens": 89}})
             + ev("message_stop", {"type": "message_stop"}))
ANTHROPIC_ERROR = (ev("message_start", {"type": "message_start", "message": {"id": "m", "model": "", "usage": {"input_tokens": 1, "output_tokens": 0}}})
                   + ev("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}))


def gframe(v):
    return "data: " + json.dumps(v) + "\r\n\r\n"


GEMINI = (gframe({"candidates": [{"content": {"role": "model", "parts": [{"text": "Hel"}]}, "index": 0}], "modelVersion": "gemini-2.0-flash-001"})
          + gframe({"candidates": [{"content": {"role": "model", "parts": [{"text": "lo w\u00f6r"}, {"functionCall": {"name": "weather", "args": {"city": "Paris"}}}]}, "index": 0}]})
          + gframe({"candidates": [{"content": {"role": "model", "parts": [{"text": "ld"}]}, "finishReason": "STOP", "index": 0}],
                    "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 4, "totalTokenCount": 7, "cachedContentTokenCount": 1}}))
GEMINI_ERROR = gframe({"error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED"}})
GEMINI_BLOCKED = gframe({"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 3}})

write("sse_parsers", "openai", sse_input(0, OPENAI))
write("sse_parsers", "openai-strip", sse_input(4 | 8, OPENAI, (200, 3)))
write("sse_parsers", "openai-refusal", sse_input(3, OPENAI_REFUSAL))
write("sse_parsers", "openai-error", sse_input(0, OPENAI_ERROR, ()))
write("sse_parsers", "anthropic", sse_input(1, ANTHROPIC))
write("sse_parsers", "anthropic-usage", sse_input(1 | 4, ANTHROPIC, (255, 255, 17)))
write("sse_parsers", "anthropic-error", sse_input(1, ANTHROPIC_ERROR))
write("sse_parsers", "gemini", sse_input(2 | 4, GEMINI))
write("sse_parsers", "gemini-error", sse_input(2, GEMINI_ERROR))
write("sse_parsers", "gemini-blocked", sse_input(2, GEMINI_BLOCKED, (1, 1, 1)))

# Configs: the fixtures, the built-in default and every YAML block of the docs.
configs = []
for d in ("tests/fixtures/configs",):
    for name in sorted(os.listdir(os.path.join(ROOT, d))):
        with open(os.path.join(ROOT, d, name)) as f:
            configs.append(("fixture-" + name, f.read()))
for name in sorted(os.listdir(os.path.join(ROOT, "docs"))):
    if not name.endswith(".md"):
        continue
    with open(os.path.join(ROOT, "docs", name)) as f:
        text = f.read()
    for i, block in enumerate(re.findall(r"```ya?ml\n(.*?)```", text, re.S)):
        configs.append(("doc-%s-%d" % (name[:-3], i), block))
with open(os.path.join(ROOT, "src/config/default.yaml")) as f:
    configs.append(("builtin", f.read()))
configs.append(("env", "model_list:\n  - model_name: gpt\n    litellm_params:\n      model: openai/gpt-4o\n"
                "      api_key: os.environ/SLUICE_FUZZ_KEY\n  - model_name: gpt\n    litellm_params:\n"
                "      model: anthropic/claude\n      api_key: os.environ/UNSET_VAR\n"
                "general_settings:\n  master_key: os.environ/SLUICE_FUZZ_KEY\n"))
for name, text in configs:
    write("config_loader", name, text)

pii = {
    "mixed": PII,
    "prose": "Version 1.2.3.4 of firmware; order 4111-1111-1111-1112 (not a card); ISBN 978-3-16-148410-0; "
             "price $1,234.56 on 2024-01-02; ghp_abcdefghijklmnopqrstuvwxyz0123456789 and "
             "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl",
    "pem": "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n",
    "placeholders": "[EMAIL_1] is literal, [see note] and [ and ] with a@b.co and AKIAIOSFODNN7EXAMPLE",
    "unicode": "Ünïcödé 📧 jöhn@exämple.com, téléphone +33 1 23 45 67 89, GB82 WEST 1234 5698 7654 32",
}
for i, (k, v) in enumerate(pii.items()):
    write("pii_scanner", k, bytes([i * 37 % 256]) + v.encode())
