"""Synthetic training queries: the backbone writes one question per sampled passage, and weak questions are dropped.

The source passage's document is the question's relevant one (``examples/train_on_my_corpus.py`` labels all its
passages). Dropped: a question too short or too long, one that repeats itself, one that is mostly a copied run of
the passage's words (it would teach lexical matching, which BM25 already does), the worked example's own question
written again, a duplicate, and one for which BM25 does not find its passage among the candidates (nothing to
re-rank, often a vague question).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections import Counter
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..backbone import Backbone
from ..documents import cut_words
from ..tokens import chat_text, decode, encode

# One worked example: small instruction-tuned models copy the passage unless they are shown what a question is.
_EXAMPLE = ("Scurvy is a disease resulting from a lack of vitamin C. Early symptoms include weakness, feeling tired "
            "and sore arms and legs. Sailors on long voyages suffered from it until citrus fruit was carried on board.",
            "What disease is caused by a lack of vitamin C?")
_ASK = "Write a question this text answers."
PROMPT_VERSION = "fewshot-v1"  # part of the work folder's key: a new prompt regenerates

MIN_WORDS, MAX_WORDS = 3, 40
COPY_FRACTION = 0.6  # a question whose longest run of the passage's words is this share of it (and 6+ words) copies
_TOKEN = re.compile(r"[a-z0-9]+")
_EXAMPLE_WORDS = _TOKEN.findall(_EXAMPLE[1].lower())  # what a question copied from the example shares with it


def _prompt_ids(tokenizer, passage: str) -> list[int]:
    if getattr(tokenizer, "chat_template", None):
        messages = [{"role": "user", "content": f"Text: {_EXAMPLE[0]}\n{_ASK}"},
                    {"role": "assistant", "content": _EXAMPLE[1]},
                    {"role": "user", "content": f"Text: {passage}\n{_ASK}"}]
        text = chat_text(tokenizer, messages)
    else:  # a base model: the same example as plain text to continue
        text = f"Text: {_EXAMPLE[0]}\nQuestion: {_EXAMPLE[1]}\n\nText: {passage}\nQuestion:"
    return encode(tokenizer, text)  # the template's own special tokens must stay special


def _clean(generated: str) -> str:
    line = generated.strip().split("\n")[0].strip().strip('"').strip()
    return re.sub(r"^(question|q)\s*:\s*", "", line, flags=re.IGNORECASE)


@torch.inference_mode()
def write_questions(backbone: Backbone, passages: list[str], max_new_tokens: int = 40) -> list[str]:
    """One greedy question per passage, generated as one left-padded batch."""
    tokenizer, model = backbone.engine_tokenizer, backbone.model
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    prompts = [_prompt_ids(tokenizer, p) for p in passages]
    width = max(map(len, prompts))
    device = model.get_input_embeddings().weight.device
    input_ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=device)
    attention_mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
    out = model.generate(input_ids=input_ids, attention_mask=attention_mask, max_new_tokens=max_new_tokens,
                         do_sample=False, pad_token_id=pad)  # [B, width + new]
    return [_clean(decode(tokenizer, row)) for row in out[:, width:]]


def passage_digest(passage: dict[str, str]) -> str:
    return hashlib.sha256(f"{passage['title']}\0{passage['text']}".encode()).hexdigest()[:12]


def generate_queries(backbone: Backbone, passages: dict[str, dict[str, str]], chunk_ids: list[str], log: Path,
                     max_words: int = 150, batch_size: int = 8) -> dict[str, str]:
    """A question for each of ``chunk_ids``: ``{chunk_id: question}``.

    Each batch is appended to ``log`` (jsonl) as it is written, so an interrupted run continues where it
    stopped; a logged passage whose text has since changed is asked again. The model reads each passage cut
    to ``max_words`` words, as the reranker will.
    """
    done: dict[str, str] = {}
    if log.is_file():
        for line in log.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by an interruption
                continue
            if row.get("chunk_id") in passages and row.get("digest") == passage_digest(passages[row["chunk_id"]]):
                done[row["chunk_id"]] = row["query"]
    todo = [c for c in chunk_ids if c not in done]
    print(f"synthetic queries: {len(chunk_ids) - len(todo)} of {len(chunk_ids)} already written; "
          f"writing {len(todo)} with {backbone.name}.")
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    bar = tqdm(total=len(todo), desc="writing queries", unit="query", disable=not todo)
    with open(log, "a", encoding="utf-8") as out, bar:
        for start in range(0, len(todo), batch_size):
            batch = todo[start:start + batch_size]
            texts = [cut_words(passages[c]["text"], max_words) for c in batch]
            for chunk_id, question in zip(batch, write_questions(backbone, texts)):
                done[chunk_id] = question
                out.write(json.dumps({"chunk_id": chunk_id, "digest": passage_digest(passages[chunk_id]),
                                      "query": question}, ensure_ascii=False) + "\n")
            out.flush()
            bar.update(len(batch))
            if start == 0 and len(todo) > batch_size:
                per_query = (time.perf_counter() - started) / len(batch)
                tqdm.write(f"  about {per_query * len(todo) / 60:.1f} min for {len(todo)} queries "
                           f"({per_query:.1f} s each)")
    return {c: done[c] for c in chunk_ids}


def text_problem(query: str, passage: str) -> str | None:
    """Why a question is unusable on its own text, or ``None``."""
    words = _TOKEN.findall(query.lower())
    if len(words) < MIN_WORDS:
        return f"shorter than {MIN_WORDS} words"
    if len(words) > MAX_WORDS:
        return f"longer than {MAX_WORDS} words"
    if len(set(words)) < len(words) / 2:  # a greedy loop: "the effect of x on the effect of x on the effect of ..."
        return "repeats itself"
    if longest_common_run(words, _TOKEN.findall(passage.lower())) >= max(6, COPY_FRACTION * len(words)):
        return "mostly copied from its passage"
    if longest_common_run(words, _EXAMPLE_WORDS) >= max(4, COPY_FRACTION * len(words)):
        return "copied from the worked example"
    return None


def longest_common_run(a: list[str], b: list[str]) -> int:
    """Length of the longest run of consecutive words shared by ``a`` and ``b``."""
    best, previous = 0, [0] * (len(b) + 1)
    for word in a:
        current = [0] * (len(b) + 1)
        for j, other in enumerate(b, 1):
            if word == other:
                current[j] = previous[j - 1] + 1
                best = max(best, current[j])
        previous = current
    return best


def filter_queries(queries: dict[str, str], passages: dict[str, dict[str, str]],
                   candidates: dict[str, list[str]]) -> tuple[dict[str, str], Counter]:
    """Keep the usable questions: ``({chunk_id: question}, Counter of drop reasons)``.

    ``candidates``: BM25's candidates for each question (keyed by its chunk id); a question whose passage
    is not among them is dropped.
    """
    kept: dict[str, str] = {}
    dropped: Counter = Counter()
    seen: set[str] = set()
    for chunk_id, query in queries.items():
        problem = text_problem(query, passages[chunk_id]["text"])
        key = " ".join(_TOKEN.findall(query.lower()))
        if problem is None and key in seen:
            problem = "duplicate of another question"
        if problem is None and chunk_id not in candidates.get(chunk_id, []):
            problem = "BM25 does not find its passage among the candidates"
        seen.add(key)
        if problem:
            dropped[problem] += 1
        else:
            kept[chunk_id] = query
    return kept, dropped
