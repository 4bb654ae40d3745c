"""Replays a trajectory file as if a model had produced it.

It answers through the same interface as a real model, so a replayed episode takes exactly
the path a real one does: same loop, same tool relay, same scoring.
"""

from __future__ import annotations

from orchestrator.agents.provider import AssistantTurn, Message, Provider, ToolCall, ToolSpec
from orchestrator.scenarios.spec import TrajectorySpec


class ScriptedProvider(Provider):
    def __init__(self, trajectory: TrajectorySpec, name: str = "scripted"):
        self.name = name
        self.trajectory = trajectory
        self._steps = list(trajectory.steps)
        self._next = 0

    def next_turn(self, messages: list[Message], tools: list[ToolSpec]) -> AssistantTurn:
        if self._next >= len(self._steps):
            return AssistantTurn(text="(the trajectory has no more steps)")
        step = self._steps[self._next]
        self._next += 1
        call_id = f"call_{self._next}"
        calls = []
        if step.bash is not None:
            calls.append(ToolCall(call_id, "bash", {"command": step.bash}))
        elif step.submit is not None:
            calls.append(ToolCall(call_id, "submit", {"answer": step.submit}))
        return AssistantTurn(text=step.think, tool_calls=calls)
