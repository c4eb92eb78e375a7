#!/usr/bin/env python3
"""Checks that the official Python SDKs work through the gateway exactly as they work against the provider.

Usage:
    python check_sdks.py --gateway http://127.0.0.1:P --direct http://127.0.0.1:Q [--no-gateway-headers]

`--direct` is a mock provider (`cargo run -p mnemom-mock-provider --bin mock-provider`), `--gateway` a gateway
whose upstreams point at that same mock. Every call is made twice with the same arguments, once against the
mock directly and once through the gateway (`<gateway>/anthropic`, `<gateway>/openai/v1`, `<gateway>/gemini`),
and what the SDK hands back (text, thinking, signatures, tool calls, usage, ids, event counts) must be equal.
Gateway responses must also carry the `x-smoltbot-agent` header (skipped with --no-gateway-headers).

To run against the mock alone, pass its URL as both --gateway and --direct, with --no-gateway-headers: when the
two URLs are equal the "gateway" side uses the direct paths (the mock has no /anthropic, /openai, /gemini prefix).

Prints `ok <name>` or `FAIL <name>: <reason>` per check, then `N passed, M failed`; exits 1 on any failure.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Mapping

# Loopback only: never route these requests through a proxy from the environment.
_no_proxy = [p for p in os.environ.get("NO_PROXY", os.environ.get("no_proxy", "")).split(",") if p]
os.environ["NO_PROXY"] = os.environ["no_proxy"] = ",".join(_no_proxy + ["127.0.0.1", "localhost", "::1"])

import anthropic  # noqa: E402
import openai  # noqa: E402
from google import genai  # noqa: E402
from google.genai import types as genai_types  # noqa: E402

AGENT_HEADER = "x-smoltbot-agent"
TIMEOUT_SECONDS = 30.0

ANTHROPIC_KEY = "sk-ant-test-key"
OPENAI_KEY = "sk-test-key"
GEMINI_KEY = "gemini-test-key"

ANTHROPIC_MODEL = "claude-sonnet-4-20250514"
OPENAI_CHAT_MODEL = "gpt-4o-mini"
OPENAI_RESPONSES_MODEL = "o3-mini"
GEMINI_MODEL = "gemini-2.5-flash"
PROMPT = "How do I cross the street safely?"


@dataclass
class Outcome:
    """What one SDK call produced: a comparable summary, and the HTTP response headers if the SDK exposes them."""

    summary: dict[str, Any]
    headers: Mapping[str, str] | None


@dataclass
class Target:
    """Clients for one side (direct or gateway)."""

    label: str
    anthropic: anthropic.Anthropic
    openai: openai.OpenAI
    gemini: genai.Client
    gemini_v1beta: genai.Client


def make_target(label: str, anthropic_url: str, openai_url: str, gemini_url: str) -> Target:
    def gemini_client(api_version: str | None) -> genai.Client:
        options = genai_types.HttpOptions(
            base_url=gemini_url,
            timeout=int(TIMEOUT_SECONDS * 1000),
            retry_options=genai_types.HttpRetryOptions(attempts=1),
        )
        if api_version:
            options.api_version = api_version
        return genai.Client(api_key=GEMINI_KEY, http_options=options)

    return Target(
        label=label,
        anthropic=anthropic.Anthropic(
            api_key=ANTHROPIC_KEY, base_url=anthropic_url, max_retries=0, timeout=TIMEOUT_SECONDS
        ),
        openai=openai.OpenAI(api_key=OPENAI_KEY, base_url=openai_url, max_retries=0, timeout=TIMEOUT_SECONDS),
        gemini=gemini_client(None),
        gemini_v1beta=gemini_client("v1beta"),
    )


def dump(value: Any) -> Any:
    """A plain-data copy of an SDK object (pydantic model, list, dict, scalar)."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (list, tuple)):
        return [dump(v) for v in value]
    if isinstance(value, dict):
        return {k: dump(v) for k, v in value.items()}
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json", exclude_none=True)
    return repr(value)


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


# --- Anthropic -----------------------------------------------------------------------------------------------

ANTHROPIC_ARGS = dict(
    model=ANTHROPIC_MODEL,
    max_tokens=2048,
    thinking={"type": "enabled", "budget_tokens": 1024},
    messages=[{"role": "user", "content": PROMPT}],
)


def anthropic_message_summary(message: Any) -> dict[str, Any]:
    blocks = message.content
    return {
        "id": message.id,
        "model": message.model,
        "role": message.role,
        "stop_reason": message.stop_reason,
        "block_types": [b.type for b in blocks],
        "text": "".join(b.text for b in blocks if b.type == "text"),
        "thinking": "".join(b.thinking for b in blocks if b.type == "thinking"),
        "signatures": [b.signature for b in blocks if b.type == "thinking"],
        "redacted_thinking": [b.data for b in blocks if b.type == "redacted_thinking"],
        "tool_calls": [{"id": b.id, "name": b.name, "input": dump(b.input)} for b in blocks if b.type == "tool_use"],
        "usage": dump(message.usage),
    }


def anthropic_create(target: Target) -> Outcome:
    raw = target.anthropic.messages.with_raw_response.create(**ANTHROPIC_ARGS)
    message = raw.parse()
    summary = anthropic_message_summary(message)
    expect(bool(summary["text"]), "no text in the message")
    expect(bool(summary["thinking"]), "no thinking in the message")
    return Outcome(summary, raw.headers)


def anthropic_create_stream(target: Target) -> Outcome:
    stream = target.anthropic.messages.create(**ANTHROPIC_ARGS, stream=True)
    event_types: list[str] = []
    text, thinking, signatures, tool_json = [], [], [], []
    start_usage: Any = None
    final_usage: Any = None
    stop_reason = None
    with stream:
        for event in stream:
            event_types.append(event.type)
            if event.type == "message_start":
                start_usage = dump(event.message.usage)
            elif event.type == "content_block_delta":
                delta = event.delta
                if delta.type == "text_delta":
                    text.append(delta.text)
                elif delta.type == "thinking_delta":
                    thinking.append(delta.thinking)
                elif delta.type == "signature_delta":
                    signatures.append(delta.signature)
                elif delta.type == "input_json_delta":
                    tool_json.append(delta.partial_json)
            elif event.type == "message_delta":
                stop_reason = event.delta.stop_reason
                final_usage = dump(event.usage)
        headers = stream.response.headers
    expect(event_types[:1] == ["message_start"], f"first event is {event_types[:1]}")
    expect(event_types[-1:] == ["message_stop"], f"last event is {event_types[-1:]}")
    summary = {
        "event_types": event_types,
        "text": "".join(text),
        "thinking": "".join(thinking),
        "signatures": signatures,
        "tool_json": "".join(tool_json),
        "stop_reason": stop_reason,
        "start_usage": start_usage,
        "final_usage": final_usage,
    }
    expect(bool(summary["text"]) and bool(summary["thinking"]), "no text or thinking deltas")
    return Outcome(summary, headers)


def anthropic_stream_helper(target: Target) -> Outcome:
    streamed_text = []
    with target.anthropic.messages.stream(**ANTHROPIC_ARGS) as stream:
        for text in stream.text_stream:
            streamed_text.append(text)
        message = stream.get_final_message()
        headers = stream.response.headers
    summary = anthropic_message_summary(message)
    expect("".join(streamed_text) == summary["text"], "text_stream differs from the final message text")
    expect(bool(summary["text"]) and bool(summary["thinking"]), "no text or thinking in the final message")
    return Outcome(summary, headers)


# --- OpenAI --------------------------------------------------------------------------------------------------

CHAT_ARGS = dict(model=OPENAI_CHAT_MODEL, messages=[{"role": "user", "content": PROMPT}])
RESPONSES_ARGS = dict(model=OPENAI_RESPONSES_MODEL, input=PROMPT, reasoning={"effort": "high", "summary": "detailed"})


def openai_chat(target: Target) -> Outcome:
    raw = target.openai.chat.completions.with_raw_response.create(**CHAT_ARGS)
    completion = raw.parse()
    choice = completion.choices[0]
    summary = {
        "id": completion.id,
        "model": completion.model,
        "finish_reason": choice.finish_reason,
        "content": choice.message.content,
        "refusal": choice.message.refusal,
        "tool_calls": dump(choice.message.tool_calls or []),
        "usage": dump(completion.usage),
    }
    expect(bool(summary["content"]), "no content")
    expect(summary["usage"] is not None, "no usage")
    return Outcome(summary, raw.headers)


def openai_chat_stream(target: Target) -> Outcome:
    stream = target.openai.chat.completions.create(**CHAT_ARGS, stream=True, stream_options={"include_usage": True})
    content, ids, finish_reasons = [], set(), []
    tool_calls: dict[int, dict[str, str]] = {}
    usage = None
    chunks = 0
    with stream:
        for chunk in stream:
            chunks += 1
            ids.add(chunk.id)
            if chunk.usage is not None:
                usage = dump(chunk.usage)
            for choice in chunk.choices:
                if choice.delta.content:
                    content.append(choice.delta.content)
                for call in choice.delta.tool_calls or []:
                    slot = tool_calls.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
                    slot["id"] += call.id or ""
                    if call.function:
                        slot["name"] += call.function.name or ""
                        slot["arguments"] += call.function.arguments or ""
                if choice.finish_reason:
                    finish_reasons.append(choice.finish_reason)
        headers = stream.response.headers
    summary = {
        "chunks": chunks,
        "ids": sorted(ids),
        "content": "".join(content),
        "tool_calls": [tool_calls[i] for i in sorted(tool_calls)],
        "finish_reasons": finish_reasons,
        "usage": usage,
    }
    expect(bool(summary["content"]), "no content deltas")
    expect(usage is not None, "no usage chunk (stream_options.include_usage)")
    return Outcome(summary, headers)


def responses_summary(response: Any) -> dict[str, Any]:
    reasoning = [item for item in response.output if item.type == "reasoning"]
    return {
        "id": response.id,
        "model": response.model,
        "status": response.status,
        "output_types": [item.type for item in response.output],
        "output_text": response.output_text,
        "reasoning_summary": [part.text for item in reasoning for part in (item.summary or [])],
        "encrypted_content": [item.encrypted_content for item in reasoning],
        "function_calls": [
            {"name": item.name, "arguments": item.arguments, "call_id": item.call_id}
            for item in response.output
            if item.type == "function_call"
        ],
        "usage": dump(response.usage),
    }


def openai_responses(target: Target) -> Outcome:
    raw = target.openai.responses.with_raw_response.create(**RESPONSES_ARGS)
    summary = responses_summary(raw.parse())
    expect(bool(summary["output_text"]), "no output_text")
    expect(bool(summary["reasoning_summary"]), "no reasoning summary")
    return Outcome(summary, raw.headers)


def openai_responses_stream(target: Target) -> Outcome:
    stream = target.openai.responses.create(**RESPONSES_ARGS, stream=True)
    event_types: list[str] = []
    text, reasoning = [], []
    final = None
    with stream:
        for event in stream:
            event_types.append(event.type)
            if event.type == "response.output_text.delta":
                text.append(event.delta)
            elif event.type == "response.reasoning_summary_text.delta":
                reasoning.append(event.delta)
            elif event.type == "response.completed":
                final = event.response
        headers = stream.response.headers
    expect(final is not None, "no response.completed event")
    summary = {
        "events": len(event_types),
        "event_kinds": sorted(set(event_types)),
        "text_deltas": "".join(text),
        "reasoning_deltas": "".join(reasoning),
        "final": responses_summary(final),
    }
    expect(summary["text_deltas"] == summary["final"]["output_text"], "text deltas differ from the final output_text")
    expect(bool(summary["reasoning_deltas"]), "no reasoning summary deltas")
    return Outcome(summary, headers)


# --- Gemini --------------------------------------------------------------------------------------------------

GEMINI_CONFIG = genai_types.GenerateContentConfig(thinking_config=genai_types.ThinkingConfig(include_thoughts=True))


def gemini_parts(response: Any) -> list[Any]:
    parts = []
    for candidate in response.candidates or []:
        if candidate.content and candidate.content.parts:
            parts.extend(candidate.content.parts)
    return parts


def gemini_summary(responses: list[Any]) -> dict[str, Any]:
    parts = [part for response in responses for part in gemini_parts(response)]
    finish = [str(c.finish_reason) for r in responses for c in (r.candidates or []) if c.finish_reason]
    usage = next((dump(r.usage_metadata) for r in reversed(responses) if r.usage_metadata), None)
    return {
        "chunks": len(responses),
        "response_ids": sorted({r.response_id for r in responses if r.response_id}),
        "model_versions": sorted({r.model_version for r in responses if r.model_version}),
        "text": "".join(p.text for p in parts if p.text and not p.thought),
        "thoughts": "".join(p.text for p in parts if p.text and p.thought),
        "thought_signatures": [p.thought_signature.hex() for p in parts if p.thought_signature],
        "function_calls": [dump(p.function_call) for p in parts if p.function_call],
        "finish_reasons": finish,
        "usage": usage,
    }


def gemini_headers(response: Any) -> Mapping[str, str] | None:
    http_response = getattr(response, "sdk_http_response", None)
    return dict(http_response.headers) if http_response and http_response.headers is not None else None


def gemini_generate(client_of: Callable[[Target], genai.Client]) -> Callable[[Target], Outcome]:
    def call(target: Target) -> Outcome:
        response = client_of(target).models.generate_content(model=GEMINI_MODEL, contents=PROMPT, config=GEMINI_CONFIG)
        summary = gemini_summary([response])
        summary["response_text"] = response.text
        expect(bool(summary["text"]), "no text")
        expect(bool(summary["thoughts"]), "no thought parts")
        return Outcome(summary, gemini_headers(response))

    return call


def gemini_generate_stream(target: Target) -> Outcome:
    responses = list(
        target.gemini.models.generate_content_stream(model=GEMINI_MODEL, contents=PROMPT, config=GEMINI_CONFIG)
    )
    expect(len(responses) > 1, f"{len(responses)} chunk(s)")
    summary = gemini_summary(responses)
    expect(bool(summary["text"]), "no text")
    expect(bool(summary["thoughts"]), "no thought parts")
    return Outcome(summary, gemini_headers(responses[0]))


# --- Runner --------------------------------------------------------------------------------------------------


def first_difference(direct: Any, gateway: Any, path: str = "") -> str | None:
    """Where two summaries differ, as a short readable description, or None if equal."""
    if isinstance(direct, dict) and isinstance(gateway, dict):
        for key in list(direct) + [k for k in gateway if k not in direct]:
            if key not in direct or key not in gateway:
                return f"{path}{key}: only on the {'gateway' if key not in direct else 'direct'} side"
            difference = first_difference(direct[key], gateway[key], f"{path}{key}.")
            if difference:
                return difference
        return None
    if isinstance(direct, list) and isinstance(gateway, list):
        if len(direct) != len(gateway):
            return f"{path.rstrip('.')}: {len(direct)} items direct, {len(gateway)} via gateway"
        for index, (d, g) in enumerate(zip(direct, gateway)):
            difference = first_difference(d, g, f"{path}{index}.")
            if difference:
                return difference
        return None
    if direct != gateway:
        where = path.rstrip(".")
        if isinstance(direct, str) and isinstance(gateway, str):
            at = next((i for i, (d, g) in enumerate(zip(direct, gateway)) if d != g), min(len(direct), len(gateway)))
            start = max(0, at - 20)
            return (
                f"{where}: strings differ at char {at} (lengths {len(direct)}/{len(gateway)}): "
                f"direct ...{short(direct[start:at + 40])} != gateway ...{short(gateway[start:at + 40])}"
            )
        return f"{where}: direct {short(direct)} != gateway {short(gateway)}"
    return None


def short(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}".replace("\n", " ")
    return text if len(text) <= 400 else text[:397] + "..."


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gateway", required=True, help="gateway base URL, e.g. http://127.0.0.1:8080")
    parser.add_argument("--direct", required=True, help="mock provider base URL, e.g. http://127.0.0.1:8900")
    parser.add_argument(
        "--no-gateway-headers",
        action="store_true",
        help=f"do not require the {AGENT_HEADER} header (for running against the mock alone)",
    )
    parser.add_argument("--verbose", action="store_true", help="print a traceback for each failure")
    args = parser.parse_args()
    gateway_url = args.gateway.rstrip("/")
    direct_url = args.direct.rstrip("/")

    direct = make_target("direct", direct_url, f"{direct_url}/v1", direct_url)
    if gateway_url == direct_url:
        # Self-test against the mock alone: it has no /anthropic, /openai, /gemini prefixes.
        print("note: --gateway equals --direct: the 'gateway' calls use the direct paths", file=sys.stderr)
        gateway = make_target("gateway", direct_url, f"{direct_url}/v1", direct_url)
    else:
        gateway = make_target(
            "gateway", f"{gateway_url}/anthropic", f"{gateway_url}/openai/v1", f"{gateway_url}/gemini"
        )

    calls: list[tuple[str, Callable[[Target], Outcome]]] = [
        ("anthropic messages.create", anthropic_create),
        ("anthropic messages.create(stream=True)", anthropic_create_stream),
        ("anthropic messages.stream", anthropic_stream_helper),
        ("openai chat.completions.create", openai_chat),
        ("openai chat.completions.create(stream=True)", openai_chat_stream),
        ("openai responses.create", openai_responses),
        ("openai responses.create(stream=True)", openai_responses_stream),
        ("gemini models.generate_content", gemini_generate(lambda t: t.gemini)),
        ("gemini models.generate_content(api_version=v1beta)", gemini_generate(lambda t: t.gemini_v1beta)),
        ("gemini models.generate_content_stream", gemini_generate_stream),
    ]

    passed = failed = 0

    def report(name: str, error: str | None) -> None:
        nonlocal passed, failed
        if error is None:
            passed += 1
            print(f"ok {name}", flush=True)
        else:
            failed += 1
            print(f"FAIL {name}: {error}", flush=True)

    for name, call in calls:
        outcomes: dict[str, Outcome] = {}
        error = None
        for target in (direct, gateway):
            try:
                outcomes[target.label] = call(target)
            except Exception as exc:  # noqa: BLE001 - every failure is reported, not raised
                if args.verbose:
                    traceback.print_exc()
                error = f"{target.label}: {describe(exc)}"
                break
        if error is None:
            difference = first_difference(outcomes["direct"].summary, outcomes["gateway"].summary)
            if difference:
                error = f"gateway result differs from direct: {difference}"
        report(name, error)

        if not args.no_gateway_headers and "gateway" in outcomes:
            headers = outcomes["gateway"].headers
            header_check = f"{name} header {AGENT_HEADER}"
            if headers is None:
                report(header_check, "the SDK exposed no response headers")
            elif not headers.get(AGENT_HEADER):
                report(header_check, f"missing from the gateway response (headers: {sorted(dict(headers))})")
            else:
                report(header_check, None)

    print(f"{passed} passed, {failed} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
