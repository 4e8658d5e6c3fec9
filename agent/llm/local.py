"""Local transformers backend: the model the agent runs is the model alignment trains.

Decoding is a small hand-written loop over the KV cache rather than `model.generate`,
because the agent needs three things `generate` does not give directly:

* exact stop strings: after every token the decoded text is checked for each stop
  string; when one appears, the completion is cut so that the returned text ends
  before the stop string *and* the returned token ids decode to exactly that text;
* per-row seeds: row i of `sample(n)` draws from its own `torch.Generator` seeded with
  `seed + i`, so a row is reproducible and (up to float noise of the batch shape)
  independent of n;
* streaming pieces that join to the same text `generate` returns.

Cut rule (documented contract, tested; shared with the CTranslate2 engine in
`rankact.agent.llm.chat_tokens`): let `k` be the character offset where the earliest stop string
starts in the decoded text. The kept ids are the longest prefix `ids[:m]` whose decoding
is a prefix of `text[:k]`; the returned text is `decode(ids[:m])`. When the stop starts on
a token boundary this is exactly `text[:k]`. When it starts in the middle of a token (e.g.
token `" Obs"` for stop `"Obs"` after `"x"` gives `"x Obs"`), that whole token is dropped,
so the text may end a few characters before the stop string: ids are what the model
produced, never re-tokenized. The end-of-sequence token ends a completion with
finish_reason "stop" and is not part of token_ids or text.
"""
from __future__ import annotations

import hashlib
import inspect
import secrets
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from rankact.agent.errors import ModelLoadError
from rankact.agent.llm.base import Completion, GenerationConfig, ModelInfo
from rankact.agent.llm.chat_tokens import (
    ChatTokenizer,
    advance,
    completion,
    cut_at,
    eos_ids,
    final_text,
    safe_text,
)
from rankact.agent.llm.chat_tokens import Row as _Row
from rankact.agent.llm.lockstep import Batch, Member, Row, RowCache, assemble_batch, common_prefix

__all__ = ["TransformersLLM", "cut_at", "pad_token_id", "resolve_model_dir", "weights_revision"]

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json")


def resolve_model_dir(model: str | Path) -> tuple[Path, str]:
    """(HF model folder, display name) for "default" (the embedded model with rankact's
    adapter), "base" (the embedded model as shipped), a folder or a .gguf file."""
    from rankact.agent.llm import model_files

    if str(model) == "default":
        folder = model_files.default_model_dir()
        adapted = folder != model_files.base_model_dir()
        return folder, model_files.ALIGNED_NAME if adapted else model_files.EMBEDDED_NAME
    if str(model) == "base":
        return model_files.base_model_dir(), model_files.EMBEDDED_NAME
    path = Path(model).expanduser()
    if not path.exists():
        raise ModelLoadError(f"model path not found: {path}")
    if path.is_file():
        if path.suffix.lower() == ".gguf":
            return model_files.converted_model_dir(path), path.stem
        raise ModelLoadError(f"not a model: {path} (expected a Hugging Face model folder or a .gguf file)")
    if not (path / "config.json").is_file():
        raise ModelLoadError(f"not a model folder: {path} (no config.json)")
    if not any((path / name).is_file() for name in WEIGHT_FILES) and not list(path.glob("*.safetensors")):
        raise ModelLoadError(f"not a model folder: {path} (no weights: model.safetensors or pytorch_model.bin)")
    return path, path.name


def weights_revision(folder: Path) -> str | None:
    """Short hash identifying the weights: the recorded sha256 of a converted folder,
    else a cheap fingerprint (size + first and last MiB) of the weight files."""
    from rankact.agent.llm.model_files import weights_sha256

    if full := weights_sha256(folder):
        return full[:12]
    files = sorted(p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin") and p.is_file())
    if not files:
        return None
    digest = hashlib.sha256()
    for path in files:
        size = path.stat().st_size
        digest.update(f"{path.name}:{size}".encode())
        with open(path, "rb") as fh:
            digest.update(fh.read(1 << 20))
            fh.seek(max(0, size - (1 << 20)))
            digest.update(fh.read(1 << 20))
    return digest.hexdigest()[:12]


def pad_token_id(tokenizer) -> int:
    """The one padding rule (inference and every trainer): the tokenizer's pad token, else its
    end-of-sequence token, else 0. Padding is always masked, so only consistency matters."""
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0):
        if candidate is not None:
            return int(candidate)
    return 0


def _cache_argument(model) -> str:
    """transformers 5 renamed `past_key_values` to `cache` (the old name warns)."""
    for candidate in (model, getattr(model, "get_base_model", lambda: None)()):
        if candidate is None:
            continue
        params = inspect.signature(candidate.forward).parameters
        if "cache" in params:
            return "cache"
        if "past_key_values" in params:
            return "past_key_values"
    return "past_key_values"


def _last_logits_kwargs(model) -> dict:
    """Ask for the last position's logits only: the LM head over a long prompt is ~20%
    of the prefill and its logits are thrown away."""
    for candidate in (model, getattr(model, "get_base_model", lambda: None)()):
        if candidate is not None and "logits_to_keep" in inspect.signature(candidate.forward).parameters:
            return {"logits_to_keep": 1}
    return {}


def _returned_cache(out):
    cache = getattr(out, "cache", None)
    return cache if cache is not None else getattr(out, "past_key_values", None)


def _option_scores(logprobs: torch.Tensor, options: list[list[int]]) -> list[float]:
    """logprobs[i, j] predicts options[i][j]; sum over each option's own tokens."""
    scores = []
    for i, opt in enumerate(options):
        if not opt:
            scores.append(0.0)
            continue
        target = torch.tensor(opt, device=logprobs.device)
        scores.append(float(logprobs[i, : len(opt)].gather(-1, target[:, None]).sum()))
    return scores


def _plain_attention(model) -> bool:
    """Prefix caching only for full-attention models, whose caches crop exactly."""
    config = getattr(model, "config", None)
    if config is None:
        return False
    if getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", True):
        return False
    return all(t == "full_attention" for t in getattr(config, "layer_types", None) or ["full_attention"])


@dataclass
class _CacheState:
    cache: object = None
    fed: list[int] = field(default_factory=list)  # the ids whose keys/values the cache holds
    ok: bool = True


class TransformersLLM(ChatTokenizer):
    """A causal LM from a Hugging Face folder, a GGUF file, or the embedded SmolLM2.
    `continue_batch` / `score_batch` decode many rows in lockstep (`rankact.agent.llm.lockstep`)."""

    def __init__(self, model: str | Path = "default", *, device: str = "cpu", dtype=None):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        folder, name = resolve_model_dir(model)
        try:
            tokenizer = AutoTokenizer.from_pretrained(folder)
            kwargs = {"dtype": dtype} if dtype is not None else {}
            lm = AutoModelForCausalLM.from_pretrained(folder, **kwargs)
        except Exception as exc:  # transformers raises many types for a bad folder
            raise ModelLoadError(f"could not load model from {folder}: {exc.__class__.__name__}: {exc}") from exc
        lm.to(device).eval()
        self._setup(lm, tokenizer, ModelInfo(backend="transformers", name=name, revision=weights_revision(folder)))

    @classmethod
    def from_pretrained_objects(cls, model, tokenizer, name: str = "in-memory") -> TransformersLLM:
        """Wrap a model already in memory (e.g. the policy PPO is training); no weights copied."""
        self = cls.__new__(cls)
        self._setup(model, tokenizer, ModelInfo(backend="transformers", name=name, revision=None))
        return self

    def _setup(self, model, tokenizer, info: ModelInfo) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.info = info
        self.eos_ids = eos_ids(tokenizer, getattr(getattr(model, "generation_config", None), "eos_token_id", None))
        self._cache_arg = _cache_argument(model)
        self._last_only = _last_logits_kwargs(model)
        self.prefix_cache = _plain_attention(model)
        self._prefix: tuple[_CacheState, tuple] | None = None
        self._rows, self._rows_key = RowCache(), None
        self.pad_id = pad_token_id(tokenizer)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # ---- the LLM protocol ----------------------------------------------------------
    def continue_ids(self, prompt_ids: Sequence[int], config: GenerationConfig) -> Completion:
        return self.sample_ids(prompt_ids, config, 1)[0]

    def sample_ids(self, prompt_ids: Sequence[int], config: GenerationConfig, n: int) -> list[Completion]:
        """n completions of raw prompt ids in one batch (greedy: computed once, copied)."""
        if n < 1:
            raise ValueError("n must be >= 1")
        start = time.perf_counter()
        rows_n = 1 if config.temperature == 0 else n
        rows = None
        for rows in self._decode(prompt_ids, config, rows_n):
            pass
        seconds = time.perf_counter() - start
        done = [self._completion(r, len(prompt_ids), seconds) for r in rows]
        return done if rows_n == n else [done[0].model_copy(deep=True) for _ in range(n)]

    def stream_ids(self, prompt_ids: Sequence[int], config: GenerationConfig) -> Iterator[str]:
        """Yield text pieces; they join to the text `continue_ids` returns for the same
        config. Text that might become the start of a stop string (or an incomplete
        UTF-8 character) is held back until it is decided."""
        emitted = ""
        for (row,) in self._decode(prompt_ids, config, 1):
            if row.done:
                final = self._final_text(row)
                if final[len(emitted):]:
                    yield final[len(emitted):]
                return
            safe = safe_text(self.tokenizer, row, config.stop)
            if len(safe) > len(emitted):
                yield safe[len(emitted):]
                emitted = safe

    # ---- lockstep batches (agent.llm.lockstep) --------------------------------------
    def continue_batch(self, prompts: Sequence[Sequence[int]], configs: Sequence[GenerationConfig]) -> list[Completion]:
        """`continue_ids` for many rows in one lockstep decode: each row its own prompt, stop
        strings, length and seed (row i samples from a generator seeded with its own seed, so
        its result does not depend on the other rows)."""
        if len(prompts) != len(configs):
            raise ValueError("continue_batch needs one config per prompt")
        if not prompts:
            return []
        if any(not p for p in prompts):
            raise ValueError("cannot continue an empty prompt")
        if not self.prefix_cache:  # caches we cannot slice per row: one row at a time
            return [self.continue_ids(p, c) for p, c in zip(prompts, configs, strict=True)]
        session = DecodeSession(self)
        for i, (prompt, config) in enumerate(zip(prompts, configs, strict=True)):
            session.add(i, prompt, config)
        done: dict[object, Completion] = {}
        while len(session):
            done.update(session.step())
        return [done[i] for i in range(len(prompts))]

    def score_batch(self, prompts: Sequence[Sequence[int]],
                    options: Sequence[Sequence[Sequence[int]]]) -> list[list[float]]:
        """`score_continuations` for many rows in one forward (plus one over the copies of
        rows whose options are longer than a token)."""
        if len(prompts) != len(options):
            raise ValueError("score_batch needs one option list per prompt")
        if not prompts:
            return []
        if any(not p for p in prompts):
            raise ValueError("score_continuations needs a non-empty prompt")
        if not self.prefix_cache:
            return [self.score_continuations(p, o) for p, o in zip(prompts, options, strict=True)]
        prompts = [list(p) for p in prompts]
        options = [[list(o) for o in opts] for opts in options]
        rows = self._prefilled(prompts)
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode():
                batch = Batch(self.model, rows, self.pad_id, self._cache_arg, self.device)
                first = torch.log_softmax(
                    batch.feed([p[len(r.ids):] for p, r in zip(prompts, rows, strict=True)]).float(), dim=-1)
                scores = [[float(first[i, o[0]]) if o else 0.0 for o in opts] for i, opts in enumerate(options)]
                longer = [(i, j) for i, opts in enumerate(options) for j, o in enumerate(opts) if len(o) > 1]
                if longer:
                    # Each multi-token option continues a copy of its row: feed all but its last
                    # token and read the log-probs of tokens 2.. from the columns before them.
                    index = [i for i, _ in longer]
                    copies = batch.expand([index.count(i) for i in range(len(batch))])
                    order = sorted(range(len(longer)), key=lambda k: longer[k][0])  # expand keeps row order
                    seqs = [options[longer[k][0]][longer[k][1]][:-1] for k in order]
                    logits = torch.log_softmax(copies.feed(seqs, all_logits=True).float(), dim=-1)
                    width = logits.shape[1]
                    for row, k in enumerate(order):
                        i, j = longer[k]
                        option = options[i][j]
                        start = width - (len(option) - 1)
                        for n, token in enumerate(option[1:]):
                            scores[i][j] += float(logits[row, start + n, token])
                self._lockstep_rows().keep([batch.row(i) for i in range(len(batch))])
        finally:
            self.model.train(was_training)
        return scores

    def decode_session(self) -> DecodeSession | None:
        """Continuous batching of `continue_ids` requests (None where rows cannot be sliced)."""
        return DecodeSession(self) if self.prefix_cache else None

    def _prefilled(self, prompts: list[list[int]]) -> list[Row]:
        """Each prompt's row with everything but its last token already in the cache.

        New tokens are fed row by row here (a prefill), so that the batched forward that
        follows feeds one token per row: padding every row to the longest new piece (an
        observation of a few hundred tokens beside rows that add one) would multiply the
        prefill by the batch size."""
        rows = self._lockstep_rows().start(prompts)
        with torch.inference_mode():
            for i, (row, prompt) in enumerate(zip(rows, prompts, strict=True)):
                if len(prompt) - len(row.ids) > 1:
                    single = Batch(self.model, [row], self.pad_id, self._cache_arg, self.device)
                    single.feed([prompt[len(row.ids):-1]])
                    rows[i] = single.row(0)
        return rows

    def _lockstep_rows(self) -> RowCache:
        """The rows kept between lockstep calls, dropped when the weights change (PPO)."""
        key = self._weights_key()
        if self._rows_key != key:
            self._rows.clear()
            self._rows_key = key
        return self._rows

    def score_continuations(self, prompt_ids: Sequence[int], options: Sequence[Sequence[int]]) -> list[float]:
        """Sum of log-probs of each option after prompt_ids. The options run as one batch;
        with the prefix cache the prompt's keys/values are reused rather than recomputed
        once per option (guided decoding scores a few options after a long prompt)."""
        prompt_ids = list(prompt_ids)
        if not prompt_ids:
            raise ValueError("score_continuations needs a non-empty prompt")
        options = [list(o) for o in options]
        if not options or max(len(o) for o in options) == 0:
            return [0.0] * len(options)
        if self.prefix_cache:
            try:
                return self._score_cached(prompt_ids, options)
            except (AttributeError, TypeError, ValueError, NotImplementedError, RuntimeError):
                self.clear_cache()  # a cache type we cannot copy or expand: plain path
        return self._score_plain(prompt_ids, options)

    def _score_plain(self, prompt_ids: list[int], options: list[list[int]]) -> list[float]:
        width, p = max(len(o) for o in options), len(prompt_ids)
        ids = torch.full((len(options), p + width), self.pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, opt in enumerate(options):
            ids[i, : p + len(opt)] = torch.tensor(prompt_ids + opt)
            mask[i, : p + len(opt)] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        with torch.inference_mode():
            try:  # only the logits predicting option tokens: positions p-1 .. p+width-2
                logits = self.model(input_ids=ids, attention_mask=mask, logits_to_keep=width + 1).logits[:, :-1]
            except TypeError:  # models without logits_to_keep
                logits = self.model(input_ids=ids, attention_mask=mask).logits[:, p - 1 : p + width - 1]
            return _option_scores(torch.log_softmax(logits.float(), dim=-1), options)

    def _score_cached(self, prompt_ids: list[int], options: list[list[int]]) -> list[float]:
        import copy

        state = self._take_prefix(prompt_ids)
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode():
                # 1. the rest of the prompt, batch 1: its last logits score every option's first token
                rest = torch.tensor([prompt_ids[len(state.fed):]], dtype=torch.long, device=self.device)
                out = self.model(input_ids=rest, use_cache=True, **{self._cache_arg: state.cache},
                                 **self._last_only)
                state.cache = _returned_cache(out)
                state.fed = list(prompt_ids)
                first = torch.log_softmax(out.logits[:, -1:].float(), dim=-1)  # (1, 1, vocab)
                width = max(len(o) for o in options)
                if width == 1:
                    return _option_scores(first.expand(len(options), -1, -1), options)
                # 2. every option but its last token, right-padded, over a copy of the prompt's cache
                # expanded to one row per option (causal attention: padding after a row's tokens is unseen)
                cache = copy.deepcopy(state.cache)
                cache.batch_repeat_interleave(len(options))
                ids = torch.full((len(options), width - 1), self.pad_id, dtype=torch.long)
                for i, opt in enumerate(options):
                    ids[i, : max(0, len(opt) - 1)] = torch.tensor(opt[:-1], dtype=torch.long)
                rest_logits = self.model(input_ids=ids.to(self.device), use_cache=True,
                                         **{self._cache_arg: cache}).logits.float()
                logprobs = torch.cat([first.expand(len(options), -1, -1), torch.log_softmax(rest_logits, -1)], 1)
                return _option_scores(logprobs, options)
        finally:
            self.model.train(was_training)
            if state.cache is not None and len(state.fed) == len(prompt_ids):
                self._prefix = (state, self._weights_key())

    # ---- decoding core -------------------------------------------------------------
    def _completion(self, row: _Row, prompt_tokens: int, seconds: float) -> Completion:
        return completion(self.tokenizer, row, prompt_tokens, seconds)

    def _final_text(self, row: _Row) -> str:
        return final_text(self.tokenizer, row)

    def _pick(self, logits: torch.Tensor, config: GenerationConfig, gens: list[torch.Generator] | None):
        if gens is None:
            return logits.argmax(dim=-1)
        probs = torch.softmax(logits / config.temperature, dim=-1)
        if config.top_p < 1.0:
            sorted_p, order = probs.sort(dim=-1, descending=True)
            drop = sorted_p.cumsum(-1) - sorted_p > config.top_p  # always keeps the top token
            sorted_p = sorted_p.masked_fill(drop, 0.0)
            probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
        return torch.stack([torch.multinomial(probs[i], 1, generator=g)[0] for i, g in enumerate(gens)])

    def _decode(self, prompt_ids: Sequence[int], config: GenerationConfig, n: int) -> Iterator[list[_Row]]:
        """Decode n rows of the same prompt; yields the rows after every step."""
        prompt_ids = list(prompt_ids)
        if not prompt_ids:
            raise ValueError("cannot continue an empty prompt")
        device = self.device
        gens = None
        if config.temperature > 0:
            base = config.seed if config.seed is not None else secrets.randbits(62)
            gens = [torch.Generator(device=device).manual_seed(base + i) for i in range(n)]
        rows = [_Row() for _ in range(n)]
        state = _CacheState()
        if n == 1 and self.prefix_cache:
            state = self._take_prefix(prompt_ids)
        inputs = torch.tensor([prompt_ids[len(state.fed):]] * n, dtype=torch.long, device=device)
        was_training = self.model.training
        self.model.eval()  # no dropout while sampling; a model being trained gets its mode back
        try:
            yield from self._steps(rows, inputs, config, gens, state)
        finally:
            self.model.train(was_training)
            if n == 1 and self.prefix_cache and state.ok and state.cache is not None:
                self._prefix = (state, self._weights_key())

    # ---- prefix KV cache -------------------------------------------------------------
    # The agent continues ids that extend the previous call's ids (prompt + what it just
    # generated + an observation), so the KV cache of the longest common prefix is kept
    # and only the new tokens are run. Prefill dominates on CPU: ~1-3 s per 500 tokens.
    def _weights_key(self) -> tuple:
        """Changes whenever the weights may have: an optimizer step or load_state_dict
        bumps the tensors' version counters; moving the model changes the device."""
        return (str(self.device), sum(p._version for p in self.model.parameters()))

    def clear_cache(self) -> None:
        """Forget the prefix KV caches (done automatically when the weights change)."""
        self._prefix = None
        self._rows.clear()

    def _take_prefix(self, prompt_ids: list[int]) -> _CacheState:
        held, self._prefix = self._prefix, None  # the held cache is mutated by this call
        if held is None:
            return _CacheState()
        state, key = held
        keep = min(common_prefix(state.fed, prompt_ids), len(prompt_ids) - 1)  # feed >= 1 token
        if key != self._weights_key() or keep <= 0:
            return _CacheState()
        try:
            if len(state.fed) > keep:
                state.cache.crop(keep - len(state.fed))  # negative: tokens to drop (transformers 4 and 5)
            if state.cache.get_seq_length() != keep:
                return _CacheState()
        except (AttributeError, TypeError, ValueError, NotImplementedError, RuntimeError):
            return _CacheState()
        state.fed = state.fed[:keep]
        return state

    def _steps(self, rows: list[_Row], inputs: torch.Tensor, config: GenerationConfig, gens,
               state: _CacheState) -> Iterator[list[_Row]]:
        for _ in range(config.max_new_tokens):
            # inference_mode per step, not around the loop: it must not leak into the
            # consumer's code while this generator is suspended at a yield.
            state.ok = False  # a step cut short leaves a cache we cannot trust
            with torch.inference_mode():
                out = self.model(input_ids=inputs, use_cache=True, **{self._cache_arg: state.cache},
                                 **self._last_only)
                state.cache = _returned_cache(out)
                state.fed.extend(inputs[0].tolist())
                state.ok = True
                nxt = self._pick(out.logits[:, -1, :].float(), config, gens)
            for row, tok in zip(rows, nxt.tolist()):
                if not row.done:
                    self._advance(row, tok, config.stop)
            if all(r.done for r in rows):
                break
            yield rows
            inputs = nxt[:, None]
        for row in rows:
            row.done = True  # rows still open ran out of tokens: finish_reason stays "length"
        yield rows

    def _advance(self, row: _Row, tok: int, stops: Sequence[str]) -> None:
        advance(row, tok, stops, self.tokenizer, self.eos_ids)


SPARE_ROWS = 4  # rows a session's batch keeps free, so that requests join without a copy of the batch


class DecodeSession:
    """Continuous batching: `continue_ids` requests decoded together one token at a time; a
    request joins at the next step and leaves as soon as it is finished, so a short reply never
    waits for a long one (what `continue_batch` does within one call). Each row samples from
    its own seeded generator: its completion is what `continue_ids` gives for the same request.

    Rows that join or leave between two steps are applied together before the next one, in
    place: a leaving row's place is taken by a row from the end, a joining row fills a spare
    one; only when the spare rows run out is the batch copied (measured: re-copying the whole
    batch at every change cost ~16% of a HotpotQA evaluation)."""

    in_place = True  # False: copy the whole batch at every change (the baseline of bench/rollout_speed.py)

    def __init__(self, llm: TransformersLLM):
        self.llm = llm
        self.batch: Batch | None = None
        self.slots: list[dict] = []  # the batch's rows, in order, then the rows waiting to join
        self.joining: list[Row] = []
        self.staying: list[int] | None = None  # rows of `batch` still decoding, when some left

    def __len__(self) -> int:
        return len(self.slots)

    def clear(self) -> None:
        """Drop every request in flight (after a failure; their rows are not kept)."""
        self.batch, self.slots, self.joining, self.staying = None, [], [], None

    def add(self, key: object, prompt: Sequence[int], config: GenerationConfig) -> None:
        prompt = list(prompt)
        if not prompt:
            raise ValueError("cannot continue an empty prompt")
        llm = self.llm
        self.joining.append(llm._prefilled([prompt])[0])
        gen = None if config.temperature == 0 else torch.Generator(device=llm.device).manual_seed(
            config.seed if config.seed is not None else secrets.randbits(62))
        self.slots.append({"key": key, "prompt": prompt, "config": config, "gen": gen, "state": _Row(),
                           "feed": [prompt[-1]], "start": time.perf_counter()})

    def _admit(self) -> None:
        """Apply the changes since the last step, in place where the batch has room (only moved
        and joining rows are copied): drop the rows that left, add the waiting ones."""
        if not self.joining and self.staying is None:
            return
        llm = self.llm
        with torch.inference_mode():
            kept = None  # the rows to copy into a new batch, where the change is not made in place
            if self.batch is not None and self.staying is not None:
                if self.in_place:
                    order = self.batch.retain(self.staying)
                    at = {old: k for k, old in enumerate(self.staying)}
                    self.slots[: len(order)] = [self.slots[at[old]] for old in order]
                else:
                    kept = self.staying
            joining = [Member.of_row(row) for row in self.joining]
            if self.batch is None or not (self.in_place and self.batch.join(joining)):
                if kept is None:
                    kept = range(len(self.batch)) if self.batch is not None else ()
                members = [self.batch.member(i) for i in kept] + joining
                self.batch = assemble_batch(llm.model, llm.pad_id, llm._cache_arg, llm.device, members,
                                            spare_rows=SPARE_ROWS) if members else None
        self.joining, self.staying = [], None

    def step(self) -> list[tuple[object, Completion]]:
        """One decode step for every row; the requests that finished, with their completions."""
        if not self.slots:
            return []
        self._admit()
        llm = self.llm
        was_training = llm.model.training
        llm.model.eval()
        finished, staying = [], []
        try:
            with torch.inference_mode():
                logits = self.batch.feed([s["feed"] for s in self.slots]).float()
                for i, slot in enumerate(self.slots):
                    state, config = slot["state"], slot["config"]
                    gens = None if slot["gen"] is None else [slot["gen"]]
                    llm._advance(state, int(llm._pick(logits[i : i + 1], config, gens)[0]), config.stop)
                    if not state.done and len(state.ids) >= config.max_new_tokens:
                        state.done = True  # finish_reason stays "length"
                    if not state.done:
                        slot["feed"] = [state.ids[-1]]
                        staying.append(i)
                        continue
                    prompt = slot["prompt"]
                    fed = len(self.batch.ids[i]) - len(prompt)
                    keep = min(fed, state.keep if state.keep is not None else len(state.ids))
                    llm._lockstep_rows().keep([self.batch.row(i).prefix(len(prompt) + keep)])
                    seconds = time.perf_counter() - slot["start"]
                    finished.append((slot["key"], llm._completion(state, len(prompt), seconds)))
                if len(staying) < len(self.slots):
                    self.staying = staying  # applied with the next joins, in one copy
                self.slots = [self.slots[i] for i in staying]
                if not self.slots:
                    self.batch, self.staying = None, None
        finally:
            llm.model.train(was_training)
        return finished
