"""The agent loop: persona and task in, tool calls relayed into the sandbox, steps out.

It stops at ``submit``, after ``max_turns`` assistant turns, once the model's tokens
(input + output) reach ``token_budget`` (the turn that crosses the budget still runs), when
the server refuses a turn because the conversation outgrew the model's context window, or
once ``max_seconds`` of wall clock have passed since the loop started. All of these are the
model's own limits or the deployer's: the episode ends cleanly and is scored like any other,
also when the very first request is refused (the task alone does not fit the window: an
episode of no turns, ``ended_by: context_limit``, which the analyst can see and filter,
rather than an infrastructure error that hides the model's limit).

The wall clock is checked before each model request and after each command, and a command
gets at most what is left of it as its timeout. A model request in flight is not cut short
(the provider's own timeout bounds it); a command the model asks for once nothing is left is
recorded, not run (timed out, no exit status), and ends the episode.

A turn without a tool call (including one cut off by the per-turn output limit) is nudged.
With a ``context_policy`` (orchestrator/agents/context.py) old tool outputs are elided in what
the model is sent; the steps keep them whole. Every step is handed to ``on_step`` as soon as
it happens, so the store keeps what finished even if the episode dies. A scenario's
escalations are injected as user messages between turns and recorded as steps.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from orchestrator.agents.accounting import TokenTotals
from orchestrator.agents.context import ContextPolicy
from orchestrator.agents.provider import (
    AssistantTurn,
    ContextLimitReached,
    Message,
    Provider,
    ToolCall,
)
from orchestrator.agents.tools import ARGUMENTS, NUDGE, TOOLS
from orchestrator.sandbox.base import Sandbox
from orchestrator.scenarios.spec import Escalation
from orchestrator.states import EndedBy
from orchestrator.transcript import Step

OnStep = Callable[[Step], None]
log = logging.getLogger("farm.loop")
# Less than this left on the wall clock is none: no command is started with it.
_LEAST_SECONDS = 0.01
NOT_RUN = "Not run: the episode's time limit was reached."


@dataclass(frozen=True)
class LoopResult:
    steps: list[Step]
    turns: int
    ended_by: EndedBy
    answer: str | None


class _Clock:
    """The episode's wall clock: ``seconds`` from when it was made (None: no limit)."""

    def __init__(self, seconds: float | None):
        self._deadline = None if seconds is None else time.monotonic() + seconds

    def left(self) -> float | None:
        return None if self._deadline is None else self._deadline - time.monotonic()

    def out(self) -> bool:
        left = self.left()
        return left is not None and left < _LEAST_SECONDS


class _Relay:
    """Executes one tool call and describes the outcome as a step."""

    def __init__(self, sandbox: Sandbox, command_timeout: float, clock: _Clock):
        self.sandbox = sandbox
        self.command_timeout = command_timeout
        self.clock = clock
        self.disk_full = False  # the last command reached the box's disk limit

    def run(self, call: ToolCall, step: Step) -> str:
        """Fill ``step`` from the call's outcome and return the tool result for the model."""
        argument = ARGUMENTS.get(call.name)
        if argument is None:
            step.kind = "invalid_tool_call"
            return (
                f"Error: there is no tool {call.name!r}; the tools are {' and '.join(ARGUMENTS)}."
            )
        value = (call.arguments or {}).get(argument)
        if not isinstance(value, str):
            step.kind = "invalid_tool_call"
            return (
                f"Error: {call.name} needs a string argument {argument!r}; "
                f"got {call.raw_arguments or call.arguments!r}."
            )
        if call.name == "submit":
            step.kind, step.answer = "submit", value
            return "Submitted."
        step.kind, step.command = "bash", value
        left = self.clock.left()
        if left is not None and left < _LEAST_SECONDS:
            step.timed_out = True
            return NOT_RUN
        timeout = self.command_timeout if left is None else min(self.command_timeout, left)
        result = self.sandbox.exec(value, timeout)
        step.stdout, step.stderr, step.exit_code = result.stdout, result.stderr, result.exit_code
        step.timed_out, step.truncated = result.timed_out, result.truncated
        self.disk_full = result.disk_full
        return result.for_model()


class _Escalations:
    """The scenario's escalations not yet injected; each fires once."""

    def __init__(self, escalations: Sequence[Escalation]):
        self.pending = list(escalations)

    def due(self, turn: int, commands: list[str]) -> list[Escalation]:
        def fires(e: Escalation) -> bool:
            if e.at_turn is not None:
                return e.at_turn == turn
            return any(re.search(e.after_command or "", c) for c in commands)

        due = [e for e in self.pending if fires(e)]
        self.pending = [e for e in self.pending if e not in due]
        return due


def run_agent(
    provider: Provider,
    sandbox: Sandbox,
    *,
    system_prompt: str,
    task: str,
    max_turns: int,
    command_timeout: float,
    escalations: Sequence[Escalation] = (),
    on_step: OnStep = lambda step: None,
    token_budget: int | None = None,
    context_policy: ContextPolicy | None = None,
    max_seconds: float | None = None,
) -> LoopResult:
    clock = _Clock(max_seconds)
    relay = _Relay(sandbox, command_timeout, clock)
    pending = _Escalations(escalations)
    messages = [Message("system", system_prompt), Message("user", task)]
    steps: list[Step] = []

    def record(turn: int, reply: AssistantTurn, first: bool, started: datetime) -> Step:
        step = Step(
            index=len(steps),
            turn=turn,
            kind="no_tool_call",
            started_at=started,
            text=reply.text if first else None,
            reasoning=reply.reasoning if first else None,
            usage=reply.usage if first else {},
        )
        steps.append(step)
        return step

    def inject(turn: int, message: str) -> None:
        step = Step(len(steps), turn, "escalation", datetime.now(UTC), observation=message)
        steps.append(step)
        messages.append(Message("user", message))
        on_step(step)

    tokens = 0
    for turn in range(1, max_turns + 1):
        if token_budget is not None and tokens >= token_budget:
            return LoopResult(steps, turn - 1, EndedBy.TOKEN_BUDGET, None)
        if clock.out():
            return LoopResult(steps, turn - 1, EndedBy.WALL_CLOCK, None)
        sent = context_policy.apply(messages) if context_policy else messages
        try:
            reply = provider.next_turn(sent, TOOLS)
        except ContextLimitReached as exc:
            log.warning("%s: ending the episode after %d turns", exc, turn - 1)
            return LoopResult(steps, turn - 1, EndedBy.CONTEXT_LIMIT, None)
        tokens += TokenTotals.of([reply.usage]).total
        messages.append(Message("assistant", reply.text or "", turn=reply))
        if not reply.tool_calls:
            step = record(turn, reply, True, datetime.now(UTC))
            step.observation = NUDGE
            messages.append(Message("user", NUDGE))
            on_step(step)
        commands = []
        for i, call in enumerate(reply.tool_calls):
            call_started = datetime.now(UTC)
            step = record(turn, reply, i == 0, call_started)
            step.observation = relay.run(call, step)
            step.duration_s = (datetime.now(UTC) - call_started).total_seconds()
            messages.append(Message("tool", step.observation, tool_call_id=call.id))
            on_step(step)
            if step.kind == "submit":
                return LoopResult(steps, turn, EndedBy.SUBMIT, step.answer)
            if relay.disk_full:
                log.info("the box reached its disk limit at turn %d", turn)
                return LoopResult(steps, turn, EndedBy.DISK_LIMIT, None)
            if step.kind == "bash" and clock.out():
                log.info("the wall clock ran out at turn %d", turn)
                return LoopResult(steps, turn, EndedBy.WALL_CLOCK, None)
            commands += [step.command] if step.command else []
        for escalation in pending.due(turn, commands):
            inject(turn, escalation.message)
    return LoopResult(steps, max_turns, EndedBy.MAX_TURNS, None)
