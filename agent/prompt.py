"""The ReAct prompt: a system prompt listing the tools, and a clean replay of past steps.

The scratchpad replays each step as rendered from its *parsed* form (thought, tool name,
canonical JSON input, observation), never the model's raw text, so a sloppy but parseable
step is shown back to the model in the proper format. Bump `PROMPT_VERSION` whenever the
wording or layout changes: trajectories record it, and trainers must not mix versions blindly.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from rankact.agent.llm import ChatMessage

PROMPT_VERSION = "react-v1"

# Placeholders: {tools} (one block per tool) and {tool_names} (comma separated). Plain
# replacement, not str.format, so a custom template may contain JSON braces.
DEFAULT_SYSTEM_TEMPLATE = """You are a helpful assistant. Answer the question, using a tool when it helps.

You can use these tools:
{tools}

Use exactly this format:
Thought: think about what to do next
Action: the tool to use, one of [{tool_names}]
Action Input: the tool's arguments as a JSON object
Observation: the tool's result (written for you, never by you)
... (Thought, Action, Action Input and Observation may repeat)
Thought: I now know the answer
Final Answer: the short answer to the question"""

NO_TOOLS_TEMPLATE = """You are a helpful assistant. Answer the question.

Use exactly this format:
Thought: think about the question
Final Answer: the short answer to the question"""

FORCE_ANSWER_MESSAGE = "You have no steps left. Reply now with one line: 'Final Answer: <your best answer>'."


def render_tool(tool: Any) -> str:
    """`- signature - description` plus the argument JSON Schema on the next line."""
    params = tool.json_schema().get("parameters", {})
    schema = json.dumps(params, ensure_ascii=False, separators=(", ", ": "))
    return f"- {tool.render_signature()}\n  arguments: {schema}"


def system_prompt(tools: Sequence[Any], template: str | None = None) -> str:
    if template is None:
        template = DEFAULT_SYSTEM_TEMPLATE if tools else NO_TOOLS_TEMPLATE
    return template.replace("{tools}", "\n".join(render_tool(t) for t in tools)).replace(
        "{tool_names}", ", ".join(t.name for t in tools)
    )


def question_message(question: str) -> str:
    return f"Question: {question}"


def render_input(action_input: dict[str, Any] | str | None) -> str:
    if isinstance(action_input, dict):
        return json.dumps(action_input, ensure_ascii=False)
    return "" if action_input is None else str(action_input)


def render_step(thought: str | None, action: str | None, action_input: Any, final_answer: str | None = None) -> str:
    """The clean text of one parsed step (without its observation)."""
    lines = [f"Thought: {thought}"] if thought else []
    if action is not None:
        lines += [f"Action: {action}", f"Action Input: {render_input(action_input)}"]
    if final_answer is not None:
        lines.append(f"Final Answer: {final_answer}")
    return "\n".join(lines)


def render_observation(text: str) -> str:
    return f"Observation: {text}"


def render_scratchpad(steps: Sequence[Any]) -> str:
    """All steps as one ReAct text block ("Thought: ...\\nAction: ...\\nObservation: ...\\n")."""
    out = []
    for step in steps:
        body = render_step(step.thought, step.action, step.action_input, step.final_answer)
        if not body:
            body = step.raw.strip()
        out.append(body + "\n")
        if step.observation is not None:
            out.append(render_observation(step.observation) + "\n")
    return "".join(out)


def build_messages(system: str, question: str, turns: Sequence[tuple[str, str]]) -> list[ChatMessage]:
    """System + question, then one (assistant step, user observation) pair per past step."""
    messages = [ChatMessage(role="system", content=system), ChatMessage(role="user", content=question_message(question))]
    for assistant, user in turns:
        messages.append(ChatMessage(role="assistant", content=assistant))
        messages.append(ChatMessage(role="user", content=user))
    return messages
