"""The ReAct prompt: tool schemas in the system prompt, custom templates, clean scratchpad."""
from __future__ import annotations

from rankact.agent.llm.scripted import ScriptedLLM
from rankact.agent.loop import Agent
from rankact.agent.prompt import PROMPT_VERSION, render_scratchpad, system_prompt
from rankact.agent.trajectory import Step
from rankact.tools.calculator import calculator


def test_system_prompt_lists_signatures_and_schemas():
    text = system_prompt([calculator])
    assert calculator.render_signature() in text
    assert '"expression": {' in text and '"required": ["expression"]' in text
    assert "one of [calculator]" in text
    assert "Final Answer:" in text and "Action Input:" in text


def test_custom_template_with_json_braces():
    template = 'Tools: {tool_names}\n{tools}\nExample input: {"expression": "1+1"}'
    text = system_prompt([calculator], template)
    assert text.startswith("Tools: calculator\n- calculator(")
    assert text.endswith('Example input: {"expression": "1+1"}')


def test_agent_uses_custom_system_prompt():
    llm = ScriptedLLM(["Final Answer: ok"])
    traj = Agent(llm, [calculator], system_prompt="Be brief. Tools: {tool_names}").run("q")
    assert llm.calls[0][0].content == "Be brief. Tools: calculator"
    assert llm.calls[0][1].content == "Question: q"
    assert traj.prompt_version == PROMPT_VERSION


def test_scratchpad_renders_parsed_steps_not_raw_text():
    steps = [
        Step(index=0, thought="math", action="calculator", action_input={"expression": "2+2"},
             observation="4", raw="math!!\naction:  calculator  \nACTION INPUT: {'expression': '2+2'}"),
        Step(index=1, thought="done", final_answer="4", raw="whatever"),
    ]
    assert render_scratchpad(steps) == (
        'Thought: math\nAction: calculator\nAction Input: {"expression": "2+2"}\nObservation: 4\n'
        "Thought: done\nFinal Answer: 4\n"
    )
