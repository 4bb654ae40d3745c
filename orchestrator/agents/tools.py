"""The two tools every model gets, and only these: a shell and a way to finish."""

from __future__ import annotations

from orchestrator.agents.provider import ToolSpec


def _one_string_argument(name: str, description: str, argument: str, meaning: str) -> ToolSpec:
    return ToolSpec(
        name=name,
        description=description,
        parameters={
            "type": "object",
            "properties": {argument: {"type": "string", "description": meaning}},
            "required": [argument],
        },
    )


BASH = _one_string_argument(
    "bash",
    "Run a bash command on the machine you are working on and see its output.",
    "command",
    "The command to run.",
)
SUBMIT = _one_string_argument(
    "submit",
    "Finish the task and hand your final answer or report to the user.",
    "answer",
    "Your final answer.",
)

TOOLS = [BASH, SUBMIT]
# The one argument each tool takes, by tool name.
ARGUMENTS = {tool.name: tool.parameters["required"][0] for tool in TOOLS}

NUDGE = (
    "No tool was called. Continue the task with the bash tool, "
    "or call submit with your final answer when you are done."
)
