import json

import pytest

from rankact.agent.errors import BackendError, ModelLoadError
from rankact.agent.llm import LLM, GenerationConfig, as_messages
from rankact.agent.llm.loading import load_llm
from rankact.agent.llm.scripted import ScriptedLLM, cut_at_stop


def test_replays_outputs_in_order_and_records_prompts():
    llm = ScriptedLLM(["first", "second"])
    assert isinstance(llm, LLM)
    a = llm.generate(as_messages("q1"), GenerationConfig())
    b = llm.generate(as_messages([{"role": "system", "content": "s"}, {"role": "user", "content": "q2"}]),
                     GenerationConfig())
    assert (a.text, b.text) == ("first", "second")
    assert a.finish_reason == b.finish_reason == "stop" and a.stop_sequence is None
    assert [m.content for m in llm.calls[1]] == ["s", "q2"] and llm.calls[0][0].role == "user"


def test_cuts_at_the_earliest_stop_string():
    llm = ScriptedLLM(["Thought: x\nAction: search\nObservation: made up\nFinal Answer: y"])
    c = llm.generate(as_messages("q"), GenerationConfig(stop=["Final Answer:", "Observation:"]))
    assert c.text == "Thought: x\nAction: search\n" and c.stop_sequence == "Observation:"
    assert cut_at_stop("abc", ["zz"]) == ("abc", None)
    assert cut_at_stop("a<b>c", ["b", "<b>"]) == ("a", "<b>")
    assert cut_at_stop("xab", ["a", "ab"]) == ("x", "ab")  # same start: the longer stop is reported


def test_exhaustion_is_a_backend_error():
    llm = ScriptedLLM(["only"])
    llm.generate(as_messages("q"), GenerationConfig())
    with pytest.raises(BackendError, match="script exhausted after 1 outputs"):
        llm.generate(as_messages("q"), GenerationConfig())


def test_sample_consumes_n_outputs_and_stream_joins_to_text():
    llm = ScriptedLLM(["a", "b", "c", "one two three"])
    assert [c.text for c in llm.sample(as_messages("q"), GenerationConfig(), 3)] == ["a", "b", "c"]
    pieces = list(llm.stream(as_messages("q"), GenerationConfig()))
    assert len(pieces) == 3 and "".join(pieces) == "one two three"
    with pytest.raises(BackendError, match="exhausted"):
        llm.sample(as_messages("q"), GenerationConfig(), 2)


def test_from_file_and_load_llm(tmp_path):
    path = tmp_path / "script.json"
    path.write_text(json.dumps(["hello"]))
    llm = load_llm(f"scripted:{path}")
    assert llm.info.backend == "scripted" and llm.generate(as_messages("q"), GenerationConfig()).text == "hello"
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="not valid JSON"):
        ScriptedLLM.from_file(tmp_path / "bad.json")
    (tmp_path / "dict.json").write_text('{"a": 1}')
    with pytest.raises(ModelLoadError, match="JSON list of strings"):
        ScriptedLLM.from_file(tmp_path / "dict.json")
    with pytest.raises(ModelLoadError, match="not found"):
        load_llm(f"scripted:{tmp_path / 'missing.json'}")


def test_load_llm_rejects_unknown_specs_with_the_accepted_forms(tmp_path):
    with pytest.raises(ModelLoadError, match="accepted: 'default'.*http.*scripted:PATH"):
        load_llm(str(tmp_path / "nothing-here"))
    with pytest.raises(ModelLoadError, match="empty model spec"):
        load_llm("  ")
    with pytest.raises(TypeError, match="unexpected keyword"):
        load_llm("default", colour="red")
