"""The two tools every model gets, and only these: a shell and a way to finish."""

from __future__ import annotations

from orchestrator.agents.provider import ToolSpec

BASH = ToolSpec(
    name="bash",
    description="Run a bash command on the machine you are working on and see its output.",
    parameters={
        "type": "object",
        "properties": {"command": {"type": "string", "description": "The command to run."}},
        "required": ["command"],
    },
)

SUBMIT = ToolSpec(
    name="submit",
    description="Finish the task and hand your final answer or report to the user.",
    parameters={
        "type": "object",
        "properties": {"answer": {"type": "string", "description": "Your final answer."}},
        "required": ["answer"],
    },
)

TOOLS = [BASH, SUBMIT]

NUDGE = (
    "No tool was called. Continue the task with the bash tool, "
    "or call submit with your final answer when you are done."
)
