import json

import pytest

from rankact.alignment.tasks import datasets, load_tasks


def test_hotpot_splits_by_position_with_gold_titles(shared_data):
    rows = json.loads((shared_data / datasets.HOTPOT_FILE).read_text())
    dev, test = datasets.hotpot_tasks("dev", shared_data), datasets.hotpot_tasks("test", shared_data)
    assert (len(dev), len(test)) == (300, 200)
    assert dev[0].question == rows[0]["question"] and dev[0].answers == [rows[0]["answer"]]
    assert test[0].question == rows[300]["question"] and test[-1].question == rows[499]["question"]
    assert dev[0].metadata["gold_titles"] == list(dict.fromkeys(t for t, _ in rows[0]["supporting_facts"]))
    # the corpus holds every gold paragraph of the split, and none of TEST's own-only titles
    corpus_titles = {p.title for p in datasets.hotpot_corpus("dev", shared_data)}
    assert all(t in corpus_titles for task in dev for t in task.metadata["gold_titles"])
    first = next(p for p in datasets.hotpot_corpus("dev", shared_data) if p.title == rows[0]["context"][0][0])
    assert first.text == "".join(rows[0]["context"][0][1]).strip()


def test_nq_splits_and_gold_passages(shared_data):
    dev, test = datasets.nq_tasks("dev", shared_data), datasets.nq_tasks("test", shared_data)
    assert (len(dev), len(test)) == (2000, 655)
    assert dev[0].id == "nq-0" and test[0].id == "nq-2000"
    corpus = datasets.nq_corpus("test", shared_data)
    assert len(corpus) == 655 and corpus[0].metadata["row"] == 2000
    assert corpus[0].title == test[0].metadata["gold_titles"][0]


def test_advbench_splits(shared_data):
    dev, test = datasets.advbench_tasks("dev", shared_data), datasets.advbench_tasks("test", shared_data)
    assert (len(dev), len(test)) == (260, 260)
    assert dev[0].answers == [] and dev[0].question.startswith("Write a script")
    assert not {t.question for t in dev} & {t.question for t in test}


def test_benign_requests_are_bundled_split_and_mix_both_kinds():
    dev, test = datasets.preset_tasks("benign", "dev"), datasets.preset_tasks("benign", "test")
    assert (len(dev), len(test)) == (60, 60)
    assert dev[0].id == "benign-0" and test[0].id == "benign-60" and dev[0].answers == []
    assert not {t.question for t in dev} & {t.question for t in test}
    for split in (dev, test):  # both splits hold everyday instructions and safe requests that sound harmful
        assert {t.metadata["kind"] for t in split} == {"instruction", "sounds-harmful"}
    assert datasets.parse_preset("benign:test") == ("benign", "test")


def test_arithmetic_is_reproducible_correct_and_disjoint():
    dev = datasets.arith_tasks("dev", 50)
    assert [t.question for t in dev] == [t.question for t in datasets.arith_tasks("dev", 50)]
    test = datasets.arith_tasks("test", 50)
    assert not {t.question for t in dev} & {t.question for t in test}
    for task in dev + test:
        expression = task.question.removeprefix("What is ").removesuffix("?")
        assert int(task.answers[0]) == eval(expression)  # the generator's own answers are right


def test_presets_and_errors(shared_data, tmp_path):
    assert datasets.parse_preset("hotpot:test") == ("hotpot", "test")
    assert datasets.parse_preset("arith") == ("arith", "dev")
    assert datasets.parse_preset("tasks.jsonl") is None
    with pytest.raises(datasets.DatasetError, match="unknown split"):
        datasets.parse_preset("nq:train")
    with pytest.raises(datasets.DatasetError, match="not found"):
        datasets.hotpot_tasks("dev", tmp_path)
    out, corpus = tmp_path / "t.jsonl", tmp_path / "c.jsonl"
    datasets.main(["hotpot:dev", "--out", str(out), "--corpus", str(corpus), "--limit", "5",
                   "--data", str(shared_data)])
    assert len(load_tasks(out)) == 5
    assert len(corpus.read_text().splitlines()) == len(datasets.hotpot_corpus("dev", shared_data))


def test_bundled_demo_data_is_valid():
    from rankact.alignment.tasks.bundled import demo_corpus, demo_tasks

    train, heldout = demo_tasks()
    assert len(train) >= 6 and len(heldout) >= 4
    assert not {t.question for t in train} & {t.question for t in heldout}
    assert len(demo_corpus()) >= 10
