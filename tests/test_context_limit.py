"""A model's context window is its own limit: refusals are recognised by their wording, an
optional policy elides old tool outputs so that long episodes fit, and redaction leaves
placeholder keys alone.

The classifier is tested over the wordings servers use and over look-alikes that must not be
taken for a full window; the policy on its own and then through ``farm run``, the real SDKs
and a real container, where what the model was sent is compared with what was stored.
"""

from __future__ import annotations

import json

import pytest

from orchestrator.agents.context import ContextPolicy
from orchestrator.agents.provider import AssistantTurn, Message, ToolCall
from orchestrator.agents.retry import is_context_limit, redact
from orchestrator.store.episodes import EpisodeStore
from tests.conftest import SHUTDOWN, fast_settings, run_farm
from tests.fake_llm import CONTEXT_FULL, Call, FakeLLM, Recorded, Reply
from tests.test_model_episodes import MODEL, farm_env

# -- the classifier ---------------------------------------------------------------------------

CONTEXT_LIMITS = [
    *[(status, json.dumps(body)) for status, body in CONTEXT_FULL.values()],
    # OpenAI, as the SDK words the error it raises
    (
        400,
        "Error code: 400 - {'error': {'message': \"This model's maximum context length is "
        "128000 tokens. However, your messages resulted in 130512 tokens. Please reduce the "
        "length of the messages.\", 'type': 'invalid_request_error', 'param': 'messages', "
        "'code': 'context_length_exceeded'}}",
    ),
    (400, '{"error": {"message": "too long", "code": "context_length_exceeded"}}'),
    # Anthropic
    (400, "prompt is too long: 210000 tokens > 200000 maximum"),
    (400, "input length and `max_tokens` exceed context limit: 198000 + 8192 > 200000"),
    # vLLM
    (
        400,
        "This model's maximum context length is 4096 tokens. However, you requested 5000 "
        "tokens (4200 in the messages, 800 in the completion).",
    ),
    (400, "The decoder prompt (length 5000) is longer than the model's maximum context length"),
    (400, "Input prompt (5000 tokens) is longer than the maximum model length of 4096"),
    (400, "input tokens exceed the max model length"),
    # llama.cpp's server, new and old
    (400, "the request exceeds the available context size, try increasing it"),
    (400, '{"error": {"code": 400, "type": "exceed_context_size_error", "message": "..."}}'),
    (500, '{"error": {"code": 500, "message": "context shift is disabled"}}'),
    (400, "maximum context length exceeded"),
    # Ollama
    (400, "the input length exceeds the context length"),
    (400, "context length exceeded"),
    # OpenRouter
    (
        400,
        "This endpoint's maximum context length is 8192 tokens. However, you requested about "
        "9100 tokens (8300 of text input, 800 in the output).",
    ),
    (413, '{"error": {"message": "...", "code": "context_length_exceeded"}}'),
]

NOT_CONTEXT_LIMITS = [
    (400, "The model `gpt-9` does not exist or you do not have access to it."),
    (404, '{"error": {"message": "model not found", "code": "model_not_found"}}'),
    (401, "Incorrect API key provided: sk-abc. invalid api key"),
    (400, "invalid api key"),
    (413, "Request Entity Too Large"),
    (413, '{"error": {"message": "request too large", "type": "invalid_request_error"}}'),
    (400, "Invalid value for 'context': expected an object, got a string"),
    (400, "Unrecognized request argument supplied: context_window"),
    (400, "messages.3: the context of this tool_result does not match any tool_use"),
    (400, "max_tokens is too large: 100000. This model supports at most 16384 completion tokens"),
    (400, "tools param requires --jinja flag"),
    (500, "internal server error"),
    # a rate limit is never a full window, whatever its words
    (429, "Request too large on tokens per min; maximum context length is 8192 tokens"),
]


@pytest.mark.parametrize(("status", "text"), CONTEXT_LIMITS)
def test_context_refusals_are_recognised(status: int, text: str) -> None:
    assert is_context_limit(status, text)


@pytest.mark.parametrize(("status", "text"), NOT_CONTEXT_LIMITS)
def test_other_refusals_are_not_context_limits(status: int, text: str) -> None:
    assert not is_context_limit(status, text)


# -- redaction --------------------------------------------------------------------------------


def test_redaction_leaves_short_placeholder_keys_alone() -> None:
    message = "This model's maximum context length is 4096 tokens: exceeded"
    assert redact(message, ["x"]) == message
    assert redact(message, ["sk-12345"]) == message  # long enough, but not in it
    assert redact(f"key sk-12345 refused; {message}", ["x", "sk-12345"]) == (
        f"key [redacted] refused; {message}"
    )
    assert redact("abcdefg abcdefgh", ["abcdefg"]) == "abcdefg abcdefgh"  # 7 chars: no secret


# -- the context policy, on its own -----------------------------------------------------------


def conversation(outputs: list[str]) -> list[Message]:
    """System, task, then one bash call and its output per ``outputs``."""
    messages = [Message("system", "sys"), Message("user", "task")]
    for i, output in enumerate(outputs):
        call = ToolCall(f"c{i}", "bash", {"command": f"cmd {i}"}, raw_arguments="{}")
        messages.append(Message("assistant", "", turn=AssistantTurn(tool_calls=[call])))
        messages.append(Message("tool", output, tool_call_id=call.id))
    return messages


def tool_contents(messages: list[Message]) -> list[str]:
    return [m.content for m in messages if m.role == "tool"]


def test_a_small_conversation_is_sent_as_it_is() -> None:
    messages = conversation(["a" * 3000] * 5)
    assert ContextPolicy(100_000).apply(messages) is messages


def test_old_outputs_are_elided_oldest_first_until_it_fits() -> None:
    outputs = [f"{i}" * 3000 for i in range(6)]
    messages = conversation(outputs)
    before = list(messages)
    policy = ContextPolicy(elide_over_chars=14_000, keep_recent=2, head_chars=100, tail_chars=50)
    sent = tool_contents(policy.apply(messages))
    assert messages == before  # the loop's own conversation is untouched
    # 18 000 characters of output: cutting the two oldest (to ~190 each) brings it under 14 000
    marker = "\n[... 2850 characters elided ...]\n"
    assert sent[:2] == [o[:100] + marker + o[-50:] for o in outputs[:2]]
    assert sent[2:] == outputs[2:]


def test_the_newest_outputs_are_never_elided() -> None:
    outputs = ["x" * 5000] * 4
    sent = tool_contents(ContextPolicy(100, keep_recent=3).apply(conversation(outputs)))
    assert "characters elided" in sent[0]
    assert sent[1:] == outputs[1:]  # still too big, but these are the newest three


def test_short_outputs_are_not_cut_for_nothing() -> None:
    outputs = ["short"] * 6 + ["y" * 2000]
    sent = tool_contents(ContextPolicy(1000, keep_recent=1).apply(conversation(outputs)))
    assert sent == outputs


def test_the_policy_needs_a_positive_size() -> None:
    with pytest.raises(ValueError):
        ContextPolicy(0)


# -- the context policy, through farm run -----------------------------------------------------


def sent_tool_results(request: Recorded) -> list[str]:
    """The tool outputs one request carried, in either API's format."""
    messages = request.body["messages"]
    if request.api == "openai":
        return [m["content"] for m in messages if m["role"] == "tool"]
    return [
        block["content"]
        for m in messages
        if m["role"] == "user"
        for block in m["content"]
        if block["type"] == "tool_result"
    ]


@pytest.mark.parametrize("api", ["openai", "anthropic"])
def test_farm_run_elides_old_outputs_for_the_model_and_stores_them_whole(
    api, sqlite_url, images
) -> None:
    commands = [f"seq {i} {i + 1999}" for i in range(1, 6)]  # ~9 KB of output each
    script = [Reply(calls=(Call("bash", {"command": c}),)) for c in commands]
    script.append(Reply(calls=(Call("submit", {"answer": "done"}),)))
    with FakeLLM(script) as fake:
        run = run_farm(
            *("run", "--scenario", SHUTDOWN, "--model", f"{api}/{MODEL}"),
            *("--base-url", fake.base_url(api), "--context-elide-chars", "20000", "--json"),
            env=farm_env(sqlite_url),
        )
    assert run.returncode == 0, run.stderr
    assert fake.rejections == []
    data = json.loads(run.stdout)
    assert (data["status"], data["ended_by"]) == ("completed", "submit")

    store = EpisodeStore.open(sqlite_url, fast_settings().migrations_dir)
    stored = store.get(data["episode_id"])
    store.engine.dispose()
    assert stored is not None
    assert stored.episode.settings["context_policy"] == ContextPolicy(20_000).record()
    full = [s.observation for s in stored.steps if s.kind == "bash"]
    assert len(full) == 5 and all(len(o or "") > 8000 for o in full)
    assert all("characters elided" not in (o or "") for o in full)  # stored whole
    assert [s.stdout for s in stored.steps[:5]] == [
        "".join(f"{n}\n" for n in range(i, i + 2000)) for i in range(1, 6)
    ]

    # The last request carried five outputs (~45 KB): the two oldest elided, head and tail
    # kept around the marker, the newest three exactly as the model first saw them.
    last = sent_tool_results(fake.requests[-1])
    assert len(last) == 5
    for output, sent in zip(full[:2], last[:2], strict=True):
        assert output is not None
        assert sent == ContextPolicy(20_000).elide(output)
        assert sent.startswith(output[:400]) and sent.endswith(output[-400:])
        assert f"[... {len(output) - 800} characters elided ...]" in sent
    assert last[2:] == full[2:]
    # Below the size nothing was cut: the second request carried its one output whole.
    assert sent_tool_results(fake.requests[1]) == full[:1]
