"""The OpenAI and Anthropic providers through the real SDKs against a local fake server.

Nothing reaches a real API and nothing is patched: the SDK clients talk HTTP to
tests/fake_llm.py through their base URL. Retries wait through an injected ``sleep`` that
records instead of sleeping, so their waits are asserted without timing anything.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from orchestrator.agents.anthropic_provider import DEFAULT_MAX_TOKENS
from orchestrator.agents.generation import GenerationSettings
from orchestrator.agents.provider import ContextLimitReached, Message, ProviderError, ToolCall
from orchestrator.agents.registry import UnknownModelError, make_provider
from orchestrator.agents.remote import RemoteProvider
from orchestrator.agents.tools import TOOLS
from orchestrator.config import Endpoint, Settings
from tests.conftest import KEY, SHUTDOWN, Sleeps, fast_settings, run_farm
from tests.fake_llm import (
    CONTEXT_FULL,
    Call,
    ContextFull,
    Drop,
    Fail,
    FakeLLM,
    Garbage,
    Hold,
    Reply,
    Slow,
    Usage,
)

SYSTEM = "You are a careful assistant."
TASK = "Archive the logs."
APIS = ("openai", "anthropic")


@pytest.fixture
def fake() -> Iterator[FakeLLM]:
    with FakeLLM() as server:
        yield server


def provider_for(
    api: str,
    fake: FakeLLM,
    scenarios,  # type: ignore[no-untyped-def]
    *,
    settings: Settings | None = None,
    sleep: Sleeps | None = None,
    **generation: object,
) -> RemoteProvider:
    provider, replayed = make_provider(
        f"{api}/fake-model",
        scenarios[SHUTDOWN],
        base_url=fake.base_url(api),
        generation=GenerationSettings(**generation),  # type: ignore[arg-type]
        settings=settings or fast_settings(),
        sleep=sleep if sleep is not None else Sleeps(),
    )
    assert replayed is None and isinstance(provider, RemoteProvider)
    return provider


def opening() -> list[Message]:
    return [Message("system", SYSTEM), Message("user", TASK)]


# -- one turn, both wire formats ------------------------------------------------------------


def test_openai_turn_carries_prompt_tools_settings_and_key(fake, scenarios, api_keys) -> None:
    fake.push(
        Reply(
            text="Looking around first.",
            reasoning="The task is about logs.",
            calls=(Call("bash", {"command": "ls /var/log/app"}),),
            usage=Usage(input=1200, output=60, cached=200, reasoning=20),
        )
    )
    provider = provider_for("openai", fake, scenarios, temperature=0.3, seed=7, max_tokens=300)
    turn = provider.next_turn(opening(), TOOLS)

    assert turn.text == "Looking around first."
    assert turn.reasoning == "The task is about logs."  # vLLM-style reasoning_content
    assert [(c.name, c.arguments) for c in turn.tool_calls] == [
        ("bash", {"command": "ls /var/log/app"})
    ]
    assert turn.usage == {"input": 1200, "output": 60, "cached": 200, "reasoning": 20}

    (request,) = fake.requests
    body = request.body
    assert body["model"] == "fake-model"
    assert body["messages"] == [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": TASK},
    ]
    assert [t["function"]["name"] for t in body["tools"]] == ["bash", "submit"]
    assert [t["function"]["parameters"] for t in body["tools"]] == [t.parameters for t in TOOLS]
    # a compatible server gets max_tokens (OpenAI itself would get max_completion_tokens)
    assert (body["temperature"], body["seed"], body["max_tokens"]) == (0.3, 7, 300)
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert provider.describe() == {
        "provider": "openai",
        "api": "openai",
        "model": "fake-model",
        "base_url": fake.openai_url,
        "generation": {"temperature": 0.3, "seed": 7, "max_tokens": 300},
    }
    assert KEY not in repr(provider.describe()) + repr(provider.connection) + repr(provider.retrier)


def test_anthropic_turn_with_thinking_and_unsupported_settings_ignored(
    fake, scenarios, api_keys
) -> None:
    fake.push(
        Reply(
            text="I will look at the logs.",
            reasoning="First I should see what is there.",
            calls=(Call("bash", {"command": "ls"}),),
            usage=Usage(input=900, output=80, cached=300, reasoning=30),
        )
    )
    provider = provider_for("anthropic", fake, scenarios, thinking=2048, temperature=0.5, seed=1)
    turn = provider.next_turn(opening(), TOOLS)

    assert fake.rejections == []
    assert turn.text == "I will look at the logs."
    assert turn.reasoning == "First I should see what is there."
    assert turn.tool_calls == [
        ToolCall(turn.tool_calls[0].id, "bash", {"command": "ls"}, '{"command": "ls"}')
    ]
    assert turn.usage == {"input": 900, "output": 80, "cached": 300, "reasoning": 30}

    (request,) = fake.requests
    body = request.body
    assert body["system"] == SYSTEM
    assert body["messages"] == [{"role": "user", "content": [{"type": "text", "text": TASK}]}]
    assert [(t["name"], t["input_schema"]) for t in body["tools"]] == [
        (t.name, t.parameters) for t in TOOLS
    ]
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 2048, "display": "summarized"}
    assert body["max_tokens"] == DEFAULT_MAX_TOKENS + 2048  # the default grows with thinking
    assert "temperature" not in body and "seed" not in body
    assert request.headers["authorization"] == f"Bearer {KEY}"
    record = provider.describe()
    assert record["ignored"] == ["seed", "temperature"]
    assert record["generation"] == {"thinking": 2048, "max_tokens": body["max_tokens"]}


def test_anthropic_sends_thinking_back_and_merges_consecutive_user_messages(
    fake, scenarios, api_keys
) -> None:
    fake.push(
        Reply(
            reasoning="Two quick looks.",
            calls=(Call("bash", {"command": "ls"}), Call("bash", {"command": "pwd"})),
        ),
        Reply(text="Let me think about it."),  # no tool call: the loop nudges
        Reply(calls=(Call("submit", {"answer": "done"}),)),
    )
    provider = provider_for("anthropic", fake, scenarios, thinking=1024)
    messages = opening()
    first = provider.next_turn(messages, TOOLS)
    messages += [
        Message("assistant", first.text or "", turn=first),
        Message("tool", "file.log", tool_call_id=first.tool_calls[0].id),
        Message("tool", "/home/agent", tool_call_id=first.tool_calls[1].id),
        Message("user", "An escalation arrives."),
    ]
    second = provider.next_turn(messages, TOOLS)
    messages += [
        Message("assistant", second.text or "", turn=second),
        Message("user", "No tool was called."),
        Message("user", "Another escalation."),
    ]
    provider.next_turn(messages, TOOLS)

    assert fake.rejections == []  # the fake refuses what the real API refuses
    second_request, third_request = fake.requests[1].body, fake.requests[2].body
    assistant = second_request["messages"][1]
    assert assistant["content"][0]["type"] == "thinking"
    assert assistant["content"][0]["thinking"] == "Two quick looks."
    assert assistant["content"][0]["signature"].startswith("sig-")
    answer = second_request["messages"][2]
    assert [b["type"] for b in answer["content"]] == ["tool_result", "tool_result", "text"]
    assert answer["content"][2]["text"] == "An escalation arrives."
    assert len(third_request["messages"]) == 5
    nudged = third_request["messages"][4]
    assert [b["text"] for b in nudged["content"]] == ["No tool was called.", "Another escalation."]


def test_openai_sends_the_conversation_as_it_is(fake, scenarios, api_keys) -> None:
    fake.push(
        Reply(calls=(Call("bash", {"command": "ls"}),)),
        Reply(calls=(Call("submit", {"answer": "done"}),)),
    )
    provider = provider_for("openai", fake, scenarios)
    messages = opening()
    first = provider.next_turn(messages, TOOLS)
    messages += [
        Message("assistant", "", turn=first),
        Message("tool", "file.log", tool_call_id=first.tool_calls[0].id),
        Message("user", "An escalation arrives."),
        Message("user", "And another."),
    ]
    provider.next_turn(messages, TOOLS)
    assert fake.rejections == []
    sent = fake.requests[1].body["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "tool", "user", "user"]
    assert sent[3]["tool_call_id"] == first.tool_calls[0].id


def test_openai_malformed_arguments_are_kept_raw_and_echoed_as_an_empty_object(
    fake, scenarios, api_keys
) -> None:
    fake.push(
        Reply(calls=(Call("bash", '{"command": "ls'),)),
        Reply(calls=(Call("submit", {"answer": "done"}),)),
    )
    provider = provider_for("openai", fake, scenarios)
    first = provider.next_turn(opening(), TOOLS)
    (call,) = first.tool_calls
    assert (call.name, call.arguments, call.raw_arguments) == ("bash", None, '{"command": "ls')
    messages = [
        *opening(),
        Message("assistant", "", turn=first),
        Message("tool", "Error: bash needs a string argument", tool_call_id=call.id),
    ]
    provider.next_turn(messages, TOOLS)
    assert fake.rejections == []
    echoed = fake.requests[1].body["messages"][2]["tool_calls"][0]["function"]["arguments"]
    assert echoed == "{}"


# -- retries ----------------------------------------------------------------------------------


@pytest.mark.parametrize("api", APIS)
def test_rate_limits_are_retried_honouring_retry_after(api, fake, scenarios, api_keys) -> None:
    fake.push(
        Fail(429, {"retry-after": "7"}, "slow down"),
        Fail(429, {"retry-after-ms": "1500"}, "slow down"),
        Fail(429, {}, "slow down"),
        Reply(calls=(Call("submit", {"answer": "ok"}),)),
    )
    sleeps = Sleeps()
    turn = provider_for(api, fake, scenarios, sleep=sleeps).next_turn(opening(), TOOLS)
    assert turn.tool_calls[0].arguments == {"answer": "ok"}
    assert len(fake.requests) == 4
    assert len(sleeps) == 3
    assert sleeps[0] >= 7.0 and sleeps[1] >= 1.5  # the server's Retry-After is honoured
    assert sleeps[2] <= 0.02  # without one, the (test-sized) backoff


def test_retry_after_is_capped(fake, scenarios, api_keys) -> None:
    fake.push(Fail(429, {"retry-after": "86400"}), Reply(text="ok"))
    sleeps = Sleeps()
    settings = fast_settings(retry_after_max_seconds=30)
    provider_for("openai", fake, scenarios, settings=settings, sleep=sleeps).next_turn(
        opening(), TOOLS
    )
    assert sleeps == [30.0]


@pytest.mark.parametrize("api", APIS)
def test_server_errors_timeouts_and_dropped_connections_are_retried(
    api, fake, scenarios, api_keys
) -> None:
    fake.push(
        Fail(500, message="internal"),
        Fail(529 if api == "anthropic" else 503, message="overloaded"),
        Fail(408, message="request timeout"),
        Fail(409, message="conflict"),
        Slow(30),  # longer than the 1 s timeout below
        Drop(),
        Reply(text="here at last"),
    )
    sleeps = Sleeps()
    settings = fast_settings(provider_timeout_seconds=1.0, retry_attempts=6)
    provider = provider_for(api, fake, scenarios, settings=settings, sleep=sleeps)
    turn = provider.next_turn(opening(), TOOLS)
    assert turn.text == "here at last"
    assert len(fake.requests) == 7 and len(sleeps) == 6


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("status", [400, 401, 404])
def test_refused_requests_fail_at_once_without_the_key(
    api, status, fake, scenarios, api_keys
) -> None:
    fake.push(Fail(status, message=f"Incorrect API key provided: {KEY}"), Reply(text="never"))
    sleeps = Sleeps()
    with pytest.raises(ProviderError) as raised:
        provider_for(api, fake, scenarios, sleep=sleeps).next_turn(opening(), TOOLS)
    message = str(raised.value)
    assert len(fake.requests) == 1 and sleeps == []  # not retried
    assert f"HTTP {status}" in message and "not retried" in message
    assert KEY not in message and "[redacted]" in message


@pytest.mark.parametrize(
    ("api", "server"),
    [(api, None) for api in APIS]
    + [("openai", server) for server in ("vllm", "llama.cpp", "llama.cpp-shift", "ollama")],
)
def test_a_full_context_window_is_its_own_error_and_never_retried(
    api, server, fake, scenarios, api_keys
) -> None:
    fake.push(ContextFull(server), Reply(text="never"))
    sleeps = Sleeps()
    with pytest.raises(ContextLimitReached) as raised:
        provider_for(api, fake, scenarios, sleep=sleeps).next_turn(opening(), TOOLS)
    assert isinstance(raised.value, ProviderError)  # callers that know only the branch
    assert len(fake.requests) == 1 and sleeps == []  # a 500 from llama.cpp included
    message = str(raised.value)
    assert "context window is full" in message
    status, body = CONTEXT_FULL[server or api]
    assert str(status) in message
    words = body["error"]["message"] if "error" in body else body["message"]
    assert words in message  # the server's own words, as they were


@pytest.mark.parametrize("api", APIS)
def test_a_short_placeholder_key_does_not_garble_errors(api, fake, scenarios, monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "x")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "x")
    fake.push(Fail(400, message="the model 'max-explorer' does not exist"))
    with pytest.raises(ProviderError) as raised:
        provider_for(api, fake, scenarios).next_turn(opening(), TOOLS)
    message = str(raised.value)
    assert "the model 'max-explorer' does not exist" in message
    assert "[redacted]" not in message


@pytest.mark.parametrize("api", APIS)
def test_a_turn_cut_off_by_the_output_limit_is_a_turn(api, fake, scenarios, api_keys) -> None:
    fake.push(
        Reply(text="I will begin by", cut_off=True),
        Reply(reasoning="thinking until the limit", cut_off=True),
        Reply(cut_off=True, usage=Usage(input=900, output=800)),
    )
    provider = provider_for(api, fake, scenarios, max_tokens=800)
    turns = [provider.next_turn(opening(), TOOLS) for _ in range(3)]
    assert [(t.text, t.reasoning, t.tool_calls) for t in turns] == [
        ("I will begin by", None, []),
        (None, "thinking until the limit", []),
        (None, None, []),
    ]
    assert turns[2].usage["output"] == 800


@pytest.mark.parametrize("api", APIS)
def test_retry_budget_running_out_is_a_provider_error(api, fake, scenarios, api_keys) -> None:
    fake.push(*[Fail(503, message="down")] * 10)
    sleeps = Sleeps()
    settings = fast_settings(retry_attempts=3)
    with pytest.raises(ProviderError, match="gave up after 4 attempts"):
        provider_for(api, fake, scenarios, settings=settings, sleep=sleeps).next_turn(
            opening(), TOOLS
        )
    assert len(fake.requests) == 4 and len(sleeps) == 3


@pytest.mark.parametrize("api", APIS)
def test_a_response_that_is_not_the_api_is_a_provider_error(api, fake, scenarios, api_keys) -> None:
    fake.push(Garbage(), Reply(text="never"))
    with pytest.raises(ProviderError, match="unusable response"):
        provider_for(api, fake, scenarios).next_turn(opening(), TOOLS)
    assert len(fake.requests) == 1


def test_nothing_listening_is_a_provider_error(scenarios, api_keys) -> None:
    with socket.socket() as s:  # a port that was free a moment ago, now closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    provider, _ = make_provider(
        "openai/fake-model",
        scenarios[SHUTDOWN],
        base_url=f"http://127.0.0.1:{port}/v1",
        settings=fast_settings(retry_attempts=2),
        sleep=Sleeps(),
    )
    with pytest.raises(ProviderError, match="connection failed; gave up after 3 attempts"):
        provider.next_turn(opening(), TOOLS)


def test_concurrency_is_limited_per_server(fake, scenarios, api_keys) -> None:
    # Each request is held until three are in flight at once, or two seconds pass: with a
    # limit of two per server, three never are.
    fake.push(*[Hold(peak=3, seconds=2, then=Reply(text="ok"))] * 4)
    settings = fast_settings(provider_concurrency={"openai": 2}, provider_timeout_seconds=30)
    providers = [provider_for("openai", fake, scenarios, settings=settings) for _ in range(4)]
    results: list[str | None] = []
    threads = [
        threading.Thread(target=lambda p=p: results.append(p.next_turn(opening(), TOOLS).text))
        for p in providers
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert results == ["ok"] * 4
    assert fake.peak == 2


# -- model strings ----------------------------------------------------------------------------


def test_model_strings_name_providers_and_endpoints(scenarios, api_keys, monkeypatch) -> None:
    scenario = scenarios[SHUTDOWN]
    settings = Settings(endpoints={"vllm": Endpoint(base_url="http://gpu-1:8000/v1", api="openai")})
    provider, _ = make_provider("vllm/Qwen/Qwen3-8B", scenario, settings=settings)
    assert isinstance(provider, RemoteProvider)
    assert provider.describe()["model"] == "Qwen/Qwen3-8B"
    assert provider.describe()["base_url"] == "http://gpu-1:8000/v1"
    assert provider.describe()["api"] == "openai"

    with pytest.raises(UnknownModelError) as raised:
        make_provider("gemini/pro", scenario, settings=settings)
    for listed in ("openai/MODEL", "anthropic/MODEL", "vllm/MODEL", "scripted/NAME"):
        assert listed in str(raised.value)
    with pytest.raises(UnknownModelError, match="--base-url is for"):
        make_provider("scripted/aligned", scenario, base_url="http://x", settings=settings)
    with pytest.raises(UnknownModelError, match="must exceed the thinking budget"):
        make_provider(
            "anthropic/claude",
            scenario,
            generation=GenerationSettings(thinking=4096, max_tokens=2000),
            settings=settings,
        )

    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(UnknownModelError, match="needs OPENAI_API_KEY"):
        make_provider("openai/gpt-4.1", scenario, settings=settings)
    # a local server needs no key
    make_provider("openai/llama", scenario, base_url="http://127.0.0.1:8080/v1", settings=settings)


def test_generation_defaults_come_from_settings_and_flags_override_them(
    scenarios, api_keys
) -> None:
    settings = Settings(generation=GenerationSettings(temperature=0.0, max_tokens=1000))
    provider, _ = make_provider(
        "openai/m",
        scenarios[SHUTDOWN],
        base_url="http://127.0.0.1:9/v1",
        generation=GenerationSettings(max_tokens=50, seed=3),
        settings=settings,
    )
    assert provider.describe()["generation"] == {"temperature": 0.0, "max_tokens": 50, "seed": 3}


def test_cli_refuses_bad_model_settings_and_a_missing_key(sqlite_url) -> None:
    env = {"FARM_DATABASE_URL": sqlite_url, "OPENAI_API_KEY": ""}
    local = (
        "run",
        "--scenario",
        SHUTDOWN,
        "--model",
        "openai/m",
        "--base-url",
        "http://127.0.0.1:9/v1",
    )
    hot = run_farm(*local, "--temperature", "5", env=env)
    assert (
        hot.returncode == 2
        and "--temperature: Input should be less than or equal to 2" in hot.stderr
    )
    broke = run_farm(*local, "--token-budget", "0", env=env)
    assert broke.returncode == 2 and "--token-budget must be a positive" in broke.stderr
    blind = run_farm(*local, "--context-elide-chars", "-1", env=env)
    assert blind.returncode == 2 and "--context-elide-chars must be a positive" in blind.stderr
    keyless = run_farm("run", "--scenario", SHUTDOWN, "--model", "openai/gpt-4.1", env=env)
    assert keyless.returncode == 2 and "needs OPENAI_API_KEY" in keyless.stderr
