"""Text <-> token ids for the local backends, and the one stop-string cut rule they share.

Both local engines (PyTorch `TransformersLLM`, CTranslate2 `CTranslate2LLM`) decode with a
Hugging Face tokenizer and must cut completions identically, so the rule lives here once.

Cut rule: let `k` be the character offset where the earliest stop string starts in the
decoded text. The kept ids are the longest prefix `ids[:m]` whose decoding is a prefix of
`text[:k]`; the returned text is `decode(ids[:m])`. A stop starting mid-token drops that
whole token, so ids are what the model produced, never re-tokenized. The end-of-sequence
token ends a completion with finish_reason "stop" and is not part of token_ids or text.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from rankact.agent.llm.base import ChatMessage, Completion, as_messages
from rankact.agent.llm.stops import holdback_start


def decode(tokenizer, ids: Sequence[int]) -> str:
    return tokenizer.decode(list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False)


# Tokens past the bisection's answer that are checked too: a token that completes a UTF-8
# character can make a decoded prefix shorter than the one before it.
_CUT_SLACK = 8


def cut_at(tokenizer, ids: Sequence[int], text: str, k: int) -> tuple[int, str]:
    """Longest prefix ids[:m] whose decoding is a prefix of text[:k]: returns (m, decoded)."""
    ids = list(ids)
    if len(ids) > 2 * _CUT_SLACK and len(text) > k:
        # Decoding every prefix from the end is quadratic (a server that ignored its stop string
        # sends thousands of tokens after it): bisect on the decoded length, which grows with m,
        # to the last prefix that fits in k characters, then walk back from a little past it.
        lo, hi = 0, len(ids)  # decode(ids[:lo]) fits; decode(ids[:hi]) is the whole text, longer than k
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if len(decode(tokenizer, ids[:mid])) <= k:
                lo = mid
            else:
                hi = mid
        top = min(len(ids), lo + _CUT_SLACK)
    else:
        top = len(ids)
    for m in range(top, -1, -1):
        piece = decode(tokenizer, ids[:m])
        if len(piece) <= k and text.startswith(piece):
            return m, piece
    return 0, ""


def find_stop(text: str, stops: Sequence[str]) -> tuple[int, str] | None:
    hits = [(text.find(s), s) for s in stops if s and s in text]
    return min(hits, key=lambda h: (h[0], -len(h[1]))) if hits else None


def eos_ids(tokenizer, generation_eos=None) -> set[int]:
    """The ids that end a completion: the generation config's, else the tokenizer's."""
    eos = generation_eos if generation_eos is not None else tokenizer.eos_token_id
    return set(eos if isinstance(eos, list) else [eos]) - {None}


class ChatTokenizer:
    """render_prompt / encode / decode over `self.tokenizer` (a Hugging Face tokenizer), and the
    chat-level `LLM` calls of a local engine as its token-level ones on the rendered prompt."""

    tokenizer: object

    def render_prompt(self, messages: Sequence[ChatMessage]) -> str:
        msgs = [m.wire() for m in as_messages(messages)]
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        # No template: a plain transcript the model can continue.
        return "".join(f"{m['role']}: {m['content']}\n" for m in msgs) + "assistant: "

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def decode(self, ids: Sequence[int]) -> str:
        return decode(self.tokenizer, ids)

    def generate(self, messages: Sequence[ChatMessage], config):
        return self.continue_ids(self.encode(self.render_prompt(messages)), config)

    def sample(self, messages: Sequence[ChatMessage], config, n: int):
        return self.sample_ids(self.encode(self.render_prompt(messages)), config, n)

    def stream(self, messages: Sequence[ChatMessage], config):
        return self.stream_ids(self.encode(self.render_prompt(messages)), config)


@dataclass
class Row:
    """One completion being decoded: its ids so far and, once done, why it ended."""

    ids: list[int] = field(default_factory=list)
    done: bool = False
    finish_reason: str = "length"
    stop_sequence: str | None = None
    keep: int | None = None  # number of ids kept after a stop cut
    text: str | None = None


def advance(row: Row, tok: int, stops: Sequence[str], tokenizer, eos: set[int]) -> None:
    """Add one generated token to row, ending it at end-of-sequence or a stop string."""
    if tok in eos:
        row.done, row.finish_reason = True, "stop"
        return
    row.ids.append(tok)
    if not stops:
        return
    text = decode(tokenizer, row.ids)
    hit = find_stop(text, stops)
    if hit:
        k, stop = hit
        row.keep, row.text = cut_at(tokenizer, row.ids, text, k)
        row.done, row.finish_reason, row.stop_sequence = True, "stop", stop


def final_text(tokenizer, row: Row) -> str:
    return row.text if row.text is not None else decode(tokenizer, row.ids)


def completion(tokenizer, row: Row, prompt_tokens: int, seconds: float) -> Completion:
    ids = row.ids if row.keep is None else row.ids[: row.keep]
    return Completion(
        text=final_text(tokenizer, row), token_ids=list(ids), finish_reason=row.finish_reason,
        stop_sequence=row.stop_sequence, prompt_tokens=prompt_tokens,
        completion_tokens=len(row.ids), seconds=seconds,
    )


def safe_text(tokenizer, row: Row, stops: Sequence[str]) -> str:
    """What a stream may show of an unfinished row: text that cannot become the start of a
    stop string, without a trailing incomplete UTF-8 character."""
    text = decode(tokenizer, row.ids)
    _, safe = cut_at(tokenizer, row.ids, text, holdback_start(text, stops))
    return safe.rstrip("\ufffd")
