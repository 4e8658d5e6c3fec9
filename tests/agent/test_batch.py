"""Lockstep rollouts: many trajectories advanced together give the same trajectories as
sequential runs (greedy), the same sampled trajectory per seed whatever the batch make-up,
and tools run for every job."""
from __future__ import annotations

import pytest

from rankact.agent.batch import Job, run_batch
from rankact.agent.build import build_agent
from rankact.agent.llm.local import TransformersLLM
from rankact.agent.llm.scripted import ScriptedLLM

QUESTIONS = ["What is 17 * 23?", "What is 2 + 2?", "Who wrote Hamlet?", "What is 9 - 4?", "Name a prime."]


@pytest.fixture(scope="module")
def agent(tiny_model_dir):
    from rankact.agent.guided import GuidedConfig

    llm = TransformersLLM(tiny_model_dir)
    return build_agent(llm, max_steps=2, guided_config=GuidedConfig(thought_max_tokens=6, input_max_tokens=6,
                                                                      answer_max_tokens=6))


def _key(t):
    return [(s.role, s.text, s.token_ids, s.forced) for s in t.segments], t.status, t.final_answer


def test_greedy_batch_equals_sequential_runs(agent):
    sequential = [agent.run(q) for q in QUESTIONS]
    agent.llm.clear_cache()
    batched = run_batch([Job(agent, q) for q in QUESTIONS], batch_size=3)
    assert [_key(t) for t in batched] == [_key(t) for t in sequential]
    assert all(t.sampling["guided"] for t in batched)


def test_sampled_runs_depend_only_on_seed(agent):
    jobs = [Job(agent, QUESTIONS[k % 2], temperature=1.0, seed=100 + k) for k in range(4)]
    together = run_batch(jobs, batch_size=4)
    apart = run_batch(jobs[2:3], batch_size=1)
    reversed_ = run_batch(jobs[::-1], batch_size=2)
    assert _key(together[2]) == _key(apart[0]) == _key(reversed_[1])
    assert _key(agent.run(QUESTIONS[0], temperature=1.0, seed=102)) == _key(together[2])


def test_tools_run_and_results_arrive_as_each_job_finishes():
    def agent():  # one script per job: a scripted backend replays its replies in order
        return build_agent(ScriptedLLM(['Action: calculator\nAction Input: {"expression": "6*7"}', "Final Answer: 42"]))

    done = []
    results = run_batch([Job(agent(), "6*7?") for _ in range(3)], batch_size=2,
                        on_done=lambda i, t, e: done.append((i, t.final_answer if t else e)))
    assert sorted(done) == [(0, "42"), (1, "42"), (2, "42")]
    assert all(r.steps[0].observation == "42" for r in results)


def test_a_bug_in_one_job_is_its_result_not_everyones(agent):
    class Broken:
        llm = agent.llm

        def core(self, question, sampling):
            raise RuntimeError("bug")
            yield  # pragma: no cover

        def sampling(self, *args):
            return None

    results = run_batch([Job(Broken(), "x"), Job(agent, QUESTIONS[1])], batch_size=2)
    assert isinstance(results[0], RuntimeError) and results[1].question == QUESTIONS[1]
