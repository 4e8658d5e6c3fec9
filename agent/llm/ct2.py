"""CTranslate2 backend: the same `LocalLLM` interface on an int8 CPU inference engine.

Why CTranslate2: on this 2-core machine SmolLM2-135M decodes at ~50 tok/s int8 batch 1 and
~150 tok/s aggregate at batch 8, against ~24 / ~100 for PyTorch `model.generate`; it ships
as a wheel (no compiler), converts any Hugging Face Llama-family folder in ~10 s, batches
several sequences in one call, and returns log-probs (`score_batch`) and raw logits.
llama.cpp (Q4) decodes a little faster at batch 1, but its binding compiles llama.cpp from
source and its high-level API is single-sequence. PyTorch stays the training model: this
engine serves `ask`, `collect` and `eval`, and PPO recomputes old log-probs in PyTorch.

What the engine does not give, and how this class makes up for it:

* stop strings: a per-step callback feeds every row's token to the same exact cut rule as
  TransformersLLM (`rankact.agent.llm.chat_tokens`) and stops that row when a stop string appears;
* prefix reuse: prefill is the cost on CPU (a 800-token prompt ~1-2 s), and the agent's
  calls extend the previous call's prompt. CTranslate2 caches the state after a
  `static_prompt`; `_StaticPrefixes` picks, per call, a cached prefix of the prompt (or
  makes `prompt[:-1]` the next one), so a call runs only the new tokens. Its cache never
  evicts, so after `MAX_PREFIXES` prefixes the generator is rebuilt (~0.1 s);
* scoring options after a long prompt: `score_batch` has no prefix cache and would rerun
  the prompt once per option, so options are scored from the raw logits of one decoding
  step after the cached prefix (`return_logits_vocab`), one call per option position;
* per-row seeds: CTranslate2 4.x has one random generator per worker thread, a
  `thread_local std::mt19937` seeded from the global `set_random_seed` value the first time
  that thread samples (src/random.cc). Reseeding later has no effect on it, and rows of a
  batch draw from it in turn, so a batched call cannot be reproducible per row. A seeded
  row therefore runs alone on a fresh `Generator` (its worker thread's generator then
  starts from the row's seed): ~0.1 s to build, no batching and no prefix cache for that
  row. Unseeded sampling and greedy decoding are batched and use the prefix cache.

Rows are batched when they share the chosen prefix, the number of tokens after it and the
sampling settings: CTranslate2 runs only the shortest prompt in one forward pass and feeds
longer prompts' extra tokens one decoding step at a time, which is slow and changes the
arithmetic, so rows of other lengths go in separate calls. Greedy rows then equal their
batch-1 result (tested).
"""
from __future__ import annotations

import json
import math
import os
import secrets
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from rankact.agent.errors import ModelLoadError
from rankact.agent.llm.base import Completion, GenerationConfig, ModelInfo
from rankact.agent.llm.chat_tokens import (
    ChatTokenizer,
    Row,
    advance,
    completion,
    eos_ids,
    final_text,
    safe_text,
)
from rankact.agent.llm.ct2_files import ct2_model_dir
from rankact.agent.llm.local import resolve_model_dir, weights_revision

MIN_PREFIX = 32  # shorter prompts are not worth a cache entry
REFRESH = 256  # start a new cached prefix once this many tokens follow the best one
MAX_PREFIXES = 8  # cached prefix states (~40 MB each for 800 tokens of SmolLM2-135M)
_SEED_LOCK = threading.Lock()  # set_random_seed is process-global


def available() -> bool:
    """True when the ctranslate2 package can be imported."""
    try:
        import ctranslate2  # noqa: F401
    except ImportError:
        return False
    return True


class _StaticPrefixes:
    """Which prefix of a prompt to hand CTranslate2 as the cached `static_prompt`."""

    def __init__(self) -> None:
        self.entries: list[tuple[int, ...]] = []
        self.full = False  # more entries than MAX_PREFIXES: the owner rebuilds the generator

    def choose(self, prompt: Sequence[int]) -> int:
        """Length of the static prefix for prompt (0: none). At least one token stays outside."""
        if len(prompt) - 1 < MIN_PREFIX:
            return 0
        best = max((e for e in self.entries if len(e) < len(prompt) and tuple(prompt[: len(e)]) == e),
                   key=len, default=None)
        if best is not None and len(prompt) - len(best) <= REFRESH:
            return len(best)
        # A new entry: all but the last token, so later calls that extend this prompt reuse it.
        if len(self.entries) >= MAX_PREFIXES:
            self.entries.clear()
            self.full = True
        self.entries.append(tuple(prompt[:-1]))
        return len(prompt) - 1


@dataclass
class _Job:
    """One row of a decoding call."""

    index: int
    prompt: list[int]
    config: GenerationConfig
    row: Row


class CTranslate2LLM(ChatTokenizer):
    """A causal LM run by CTranslate2, from a Hugging Face folder, a .gguf file or "default"."""

    def __init__(self, model: str | Path = "default", *, quantization: str = "int8", threads: int | None = None,
                 cache_dir: Path | None = None):
        try:
            import ctranslate2
        except ImportError as exc:
            raise ModelLoadError("the ctranslate2 engine needs the ctranslate2 package: pip install ctranslate2") \
                from exc
        from transformers import AutoTokenizer
        from transformers import GenerationConfig as HFGenerationConfig

        self._ct2 = ctranslate2
        folder, name = resolve_model_dir(model)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(folder)
        except Exception as exc:  # transformers raises many types for a bad folder
            raise ModelLoadError(f"could not load the tokenizer from {folder}: {exc.__class__.__name__}: {exc}") \
                from exc
        self.model_dir, self.conversion_seconds = ct2_model_dir(folder, quantization, cache_dir)
        self.vocab: list[str] = json.loads((self.model_dir / "vocabulary.json").read_text())
        try:
            generation_eos = HFGenerationConfig.from_pretrained(folder).eos_token_id
        except (OSError, ValueError):
            generation_eos = None
        self.eos_ids = eos_ids(self.tokenizer, generation_eos)
        self.threads = threads or len(os.sched_getaffinity(0))
        self.generator = self._new_generator()
        self._prefixes = _StaticPrefixes()
        self.info = ModelInfo(backend="ctranslate2", name=name, revision=weights_revision(folder))

    def _new_generator(self):
        return self._ct2.Generator(str(self.model_dir), device="cpu", compute_type="default",
                                   intra_threads=self.threads)

    def _tokens(self, ids: Sequence[int]) -> list[str]:
        try:
            return [self.vocab[i] for i in ids]
        except (IndexError, TypeError) as exc:
            raise ValueError(f"token id outside the model's vocabulary ({len(self.vocab)}): {exc}") from exc

    def _static(self, prompt: Sequence[int]) -> int:
        n = self._prefixes.choose(prompt)
        if self._prefixes.full:  # CTranslate2 never evicts a cached prefix: start a fresh cache
            self.generator = self._new_generator()
            self._prefixes.full = False
        return n

    def clear_cache(self) -> None:
        """Forget the cached prompt prefixes."""
        self._prefixes = _StaticPrefixes()
        self.generator = self._new_generator()

    # ---- the LLM protocol ----------------------------------------------------------
    def continue_ids(self, prompt_ids: Sequence[int], config: GenerationConfig) -> Completion:
        return self.continue_batch([prompt_ids], [config])[0]

    def sample_ids(self, prompt_ids: Sequence[int], config: GenerationConfig, n: int) -> list[Completion]:
        """n completions; with a seed, completion i uses seed + i (greedy: computed once, copied)."""
        if n < 1:
            raise ValueError("n must be >= 1")
        if config.temperature == 0:
            done = self.continue_ids(prompt_ids, config)
            return [done.model_copy(deep=True) for _ in range(n)]
        configs = [config if config.seed is None else config.model_copy(update={"seed": config.seed + i})
                   for i in range(n)]
        return self.continue_batch([prompt_ids] * n, configs)

    def continue_batch(self, prompts: Sequence[Sequence[int]], configs: Sequence[GenerationConfig]) -> list[Completion]:
        """Every row's continuation; rows that can share a call run as one batch."""
        if len(prompts) != len(configs):
            raise ValueError("continue_batch needs one config per prompt")
        jobs = [_Job(i, list(p), c, Row()) for i, (p, c) in enumerate(zip(prompts, configs, strict=True))]
        if any(not j.prompt for j in jobs):
            raise ValueError("cannot continue an empty prompt")
        start = time.perf_counter()
        groups: dict[tuple, list[_Job]] = {}
        for job in jobs:
            c = job.config
            if c.temperature > 0 and c.seed is not None:
                self._run_seeded(job)
                continue
            static = self._static(job.prompt)
            sampling = (0.0, 1.0) if c.temperature == 0 else (c.temperature, c.top_p)
            key = (tuple(job.prompt[:static]), len(job.prompt) - static, sampling)
            groups.setdefault(key, []).append(job)
        for (static, _, _), group in groups.items():
            self._run(self.generator, group, len(static))
        seconds = time.perf_counter() - start
        return [completion(self.tokenizer, j.row, len(j.prompt), seconds) for j in jobs]

    def _run_seeded(self, job: _Job) -> None:
        """A seeded row alone on a fresh generator whose random stream starts at its seed."""
        with _SEED_LOCK:
            self._ct2.set_random_seed(job.config.seed % (1 << 32))
            generator = self._new_generator()
            try:
                self._run(generator, [job], 0)
            finally:
                # Later generators must not inherit this seed (unseeded sampling stays random).
                self._ct2.set_random_seed(secrets.randbits(31))
                del generator

    def _options(self, jobs: list[_Job], static: int) -> dict:
        c = jobs[0].config
        opts = {"max_length": max(j.config.max_new_tokens for j in jobs), "include_prompt_in_result": False,
                "return_end_token": True, "end_token": sorted(self.eos_ids)}
        if c.temperature == 0:
            opts.update(sampling_topk=1)
        else:
            opts.update(sampling_topk=0, sampling_topp=c.top_p, sampling_temperature=c.temperature)
        if static:
            opts.update(static_prompt=self._tokens(jobs[0].prompt[:static]), cache_static_prompt=True)
        return opts

    def _step(self, job: _Job, token: int) -> bool:
        """Feed one generated token to a row; True when the row is finished."""
        row = job.row
        if not row.done:
            advance(row, token, job.config.stop, self.tokenizer, self.eos_ids)
            if not row.done and len(row.ids) >= job.config.max_new_tokens:
                row.done = True  # finish_reason stays "length"
        return row.done

    def _run(self, generator, jobs: list[_Job], static: int) -> None:
        errors: list[BaseException] = []

        def callback(step) -> bool:
            try:
                return self._step(jobs[step.batch_id], step.token_id)
            except BaseException as exc:  # noqa: BLE001 - raised again in the caller's thread
                errors.append(exc)
                return True

        generator.generate_batch([self._tokens(j.prompt[static:]) for j in jobs], callback=callback,
                                 **self._options(jobs, static))
        if errors:
            raise errors[0]
        for job in jobs:
            job.row.done = True  # rows CTranslate2 ended at max_length

    def stream_ids(self, prompt_ids: Sequence[int], config: GenerationConfig) -> Iterator[str]:
        """Yield text pieces that join to `continue_ids`' text for the same config."""
        job = _Job(0, list(prompt_ids), config, Row())
        if not job.prompt:
            raise ValueError("cannot continue an empty prompt")
        seeded = config.temperature > 0 and config.seed is not None
        if seeded:
            with _SEED_LOCK:  # the fresh generator's thread seeds itself on its first sample, below
                self._ct2.set_random_seed(config.seed % (1 << 32))
                generator = self._new_generator()
            static = 0
        else:
            generator, static = self.generator, self._static(job.prompt)
        opts = self._options([job], static)
        opts.pop("include_prompt_in_result")
        opts.pop("return_end_token")
        emitted = ""
        steps = generator.generate_tokens(self._tokens(job.prompt[static:]), **opts)
        try:
            for step in steps:
                if self._step(job, step.token_id):
                    break
                safe = safe_text(self.tokenizer, job.row, config.stop)
                if len(safe) > len(emitted):
                    yield safe[len(emitted):]
                    emitted = safe
        finally:
            steps.close()
            if seeded:
                self._ct2.set_random_seed(secrets.randbits(31))
        final = final_text(self.tokenizer, job.row)
        if final[len(emitted):]:
            yield final[len(emitted):]

    # ---- scoring -------------------------------------------------------------------
    def score_continuations(self, prompt_ids: Sequence[int], options: Sequence[Sequence[int]]) -> list[float]:
        return self.score_batch([prompt_ids], [options])[0]

    def score_batch(self, prompts: Sequence[Sequence[int]],
                    options: Sequence[Sequence[Sequence[int]]]) -> list[list[float]]:
        """Sum of each option's token log-probs after its row's prompt.

        Token j of an option is scored from the logits of one decoding step after
        prompt + option[:j], run over the prompt's cached prefix; all (row, option, j) of one
        prefix and length share a call."""
        if len(prompts) != len(options):
            raise ValueError("score_batch needs one option list per prompt")
        scores = [[0.0] * len(opts) for opts in options]
        calls: dict[tuple, list[tuple[int, int, int, list[int]]]] = {}
        for r, (prompt, opts) in enumerate(zip(prompts, options, strict=True)):
            prompt = list(prompt)
            if not prompt:
                raise ValueError("score_continuations needs a non-empty prompt")
            if not any(len(o) for o in opts):
                continue
            static = self._static(prompt)
            for o, opt in enumerate(opts):
                for j, target in enumerate(opt):
                    tail = prompt[static:] + list(opt[:j])
                    calls.setdefault((tuple(prompt[:static]), len(tail)), []).append((r, o, target, tail))
        for (static, _), items in calls.items():
            opts = {"max_length": 1, "include_prompt_in_result": False, "sampling_topk": 1,
                    "return_logits_vocab": True}
            if static:
                opts.update(static_prompt=self._tokens(static), cache_static_prompt=True)
            results = self.generator.generate_batch([self._tokens(t) for *_, t in items], **opts)
            for (r, o, target, _), result in zip(items, results, strict=True):
                scores[r][o] += _log_softmax_at(result.logits[0], target)
        return scores

    def token_logprobs(self, ids: Sequence[int]) -> list[float]:
        """log p(ids[i] | ids[:i]) for i >= 1, teacher-forced in one pass (parity checks)."""
        result = self.generator.score_batch([self._tokens(ids)], max_input_length=0)[0]
        return list(result.log_probs)


def _log_softmax_at(logits, target: int) -> float:
    import numpy as np

    row = np.asarray(logits, dtype=np.float64).reshape(-1)
    top = row.max()
    return float(row[target] - top - math.log(np.exp(row - top).sum()))
