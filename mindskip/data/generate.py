"""A self-generated instruction set: held-out prompts answered by the dense model itself.

:func:`generate_responses` takes Alpaca records (their ``instruction`` + ``input`` are the
prompt; their ``output`` is ignored), answers each with the model (greedy, chat template,
at most ``max_new_tokens`` new tokens) and writes the answers as Alpaca JSONL, plus a
sidecar ``<stem>.manifest.json`` with the settings, the input, model and tokenizer hashes,
counts, timing and the provenance stamp. When the sidecar already matches (same settings
and hashes, output file intact) nothing is generated.

Cost on a CPU is prefill-bound with long, padded prompts (``shared/OFFLINE.md``), so
prompts longer than ``max_prompt_tokens`` are left out (never cut: a cut question is not a
question), and prompts are batched in order of length, so a batch pads little. The output
keeps the input order. The prompts should come from records that cannot overlap the
evaluation (the embedded training sources: ``training_records("embedded")``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..files import read_json, write_json, write_jsonl
from ..provenance import sha256_file, stamp

log = logging.getLogger(__name__)

GENERATOR = "mindskip.data.generate/1"  # bump when the output for the same key changes


def user_message(record: dict[str, Any]) -> str:
    """The user turn of a record: instruction + blank line + input (input when non-empty)."""
    return "\n\n".join(p for p in (record["instruction"], record.get("input") or "") if p)


def plain_prompt(record: dict[str, Any]) -> str:
    """The ``### Instruction / ### Input / ### Response`` prompt (tokenizers with no chat
    template)."""
    prompt = f"### Instruction:\n{record['instruction']}\n\n"
    if record.get("input"):
        prompt += f"### Input:\n{record['input']}\n\n"
    return prompt + "### Response:\n"


def prompt_ids(tokenizer: Any, record: dict[str, Any]) -> list[int]:
    """Token ids of the prompt the model answers: the chat template with its generation
    prompt, or :func:`plain_prompt` (with the tokenizer's special tokens)."""
    if getattr(tokenizer, "chat_template", None):
        turns = [{"role": "user", "content": user_message(record)}]
        text = tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
        return tokenizer(text, add_special_tokens=False)["input_ids"]
    return tokenizer(plain_prompt(record))["input_ids"]


def sidecar_path(out_path: str | Path) -> Path:
    out_path = Path(out_path)
    return out_path.with_name(out_path.name.split(".")[0] + ".manifest.json")


def model_sha256(model: Any) -> str:
    """sha256 over the model's state dict (names, dtypes, shapes and bytes, sorted)."""
    import torch

    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}\n".encode())
        h.update(t.reshape(-1).view(dtype=torch.uint8).numpy().tobytes())
    return h.hexdigest()


def tokenizer_sha256(tokenizer: Any) -> str:
    """sha256 of the tokenizer's vocabulary/merges and its chat template."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    body = backend.to_str() if backend is not None else json.dumps(tokenizer.get_vocab())
    chat = getattr(tokenizer, "chat_template", None) or ""
    return hashlib.sha256((body + "\n" + chat).encode()).hexdigest()


def inputs_sha256(records: Sequence[dict[str, Any]]) -> str:
    """sha256 of the prompts (instruction and input) of the records, in order."""
    h = hashlib.sha256()
    for r in records:
        row = {"instruction": r["instruction"], "input": r.get("input") or ""}
        h.update((json.dumps(row, sort_keys=True, ensure_ascii=False) + "\n").encode())
    return h.hexdigest()


def _cached(out_path: Path, key: dict[str, Any]) -> dict[str, Any] | None:
    side = sidecar_path(out_path)
    if not (side.is_file() and out_path.is_file()):
        return None
    try:
        meta = read_json(side, "generation sidecar")
    except ValueError:
        return None
    if meta.get("key") != key or meta.get("output_sha256") != sha256_file(out_path):
        return None
    return meta


def generate_responses(
    model: Any,
    tokenizer: Any,
    records: Sequence[dict[str, Any]],
    *,
    max_new_tokens: int,
    max_prompt_tokens: int,
    batch_size: int,
    out_path: str | Path,
) -> dict[str, Any]:
    """Answer each record's prompt with ``model`` (greedy) and write Alpaca JSONL to
    ``out_path``; returns the sidecar (also written beside it).

    Rows keep the input order and carry ``instruction``, ``input``, ``output`` (the
    model's answer, special tokens removed), ``source`` (``generated:<source>``),
    ``index`` (position in ``records``), ``prompt_tokens``, ``response_tokens`` and
    ``stopped`` (``"eos"`` or ``"length"``). Records whose prompt is longer than
    ``max_prompt_tokens``, and empty answers, are left out and counted. ``model`` must be
    the dense model (no routers).
    """
    from ..surgery import is_mindskip

    if is_mindskip(model):
        raise ValueError("generate_responses answers with the dense model: remove routers first")
    if min(max_new_tokens, max_prompt_tokens, batch_size) < 1:
        raise ValueError("max_new_tokens, max_prompt_tokens and batch_size must be >= 1")
    out_path = Path(out_path)
    settings = {
        "generator": GENERATOR,
        "decoding": "greedy",
        "max_new_tokens": max_new_tokens,
        "max_prompt_tokens": max_prompt_tokens,
        "batch_size": batch_size,
        "dtype": str(next(model.parameters()).dtype),
        "format": "chat_template" if getattr(tokenizer, "chat_template", None) else "plain",
    }
    key = {
        "settings": settings,
        "input_sha256": inputs_sha256(records),
        "inputs": len(records),
        "model_sha256": model_sha256(model),
        "tokenizer_sha256": tokenizer_sha256(tokenizer),
    }
    cached = _cached(out_path, key)
    if cached is not None:
        log.info("generate: %s is up to date (%d rows)", out_path, cached["rows"])
        return cached
    t0, c0 = time.perf_counter(), time.process_time()
    prompts = [prompt_ids(tokenizer, r) for r in records]
    keep = [i for i, p in enumerate(prompts) if len(p) <= max_prompt_tokens]
    answers = _generate_all(model, tokenizer, prompts, keep, max_new_tokens, batch_size)
    rows, counts = _rows(records, prompts, answers, tokenizer)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    write_jsonl(out_path, rows)
    meta = {
        "key": key,
        "path": str(out_path),
        "output_sha256": sha256_file(out_path),
        "rows": len(rows),
        "dropped_long_prompts": len(records) - len(keep),
        **counts,
        "seconds": seconds,
        "cpu_seconds": cpu,
        "new_tokens_per_s": counts["new_tokens"] / seconds if seconds > 0 else None,
        "seconds_per_row": seconds / max(len(keep), 1),
        "device": str(next(model.parameters()).device),
        "provenance": stamp(),
    }
    write_json(sidecar_path(out_path), meta)
    log.info(
        "generate: %d answers, %d new tokens in %.0f s (%.1f tok/s) -> %s",
        len(rows),
        counts["new_tokens"],
        seconds,
        meta["new_tokens_per_s"] or 0.0,
        out_path,
    )
    return meta


def _stop_ids(model: Any, tokenizer: Any) -> list[int]:
    ids = model.generation_config.eos_token_id
    ids = [] if ids is None else ([ids] if isinstance(ids, int) else list(ids))
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids


def _generate_all(
    model: Any,
    tokenizer: Any,
    prompts: list[list[int]],
    keep: list[int],
    max_new_tokens: int,
    batch_size: int,
) -> dict[int, tuple[list[int], bool]]:
    """Per kept prompt index: the new token ids (cut after the first stop token) and
    whether a stop token ended them."""
    import torch

    stop = _stop_ids(model, tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop[0]
    order = sorted(keep, key=lambda i: len(prompts[i]))
    device = next(model.parameters()).device
    answers: dict[int, tuple[list[int], bool]] = {}
    model.eval()
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        batch = tokenizer.pad(
            [{"input_ids": prompts[i]} for i in idx],
            padding=True,
            padding_side="left",
            return_attention_mask=True,
            return_tensors="pt",
        ).to(device)
        with torch.no_grad():
            out = model.generate(
                **batch,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                eos_token_id=stop,
                pad_token_id=pad,
            )
        new = out[:, batch["input_ids"].shape[1] :].tolist()
        for i, toks in zip(idx, new, strict=True):
            cut = next((k for k, t in enumerate(toks) if t in stop), None)
            answers[i] = (toks, False) if cut is None else (toks[: cut + 1], True)
        log.info("generate: %d/%d prompts", min(start + batch_size, len(order)), len(order))
    return answers


def _rows(
    records: Sequence[dict[str, Any]],
    prompts: list[list[int]],
    answers: dict[int, tuple[list[int], bool]],
    tokenizer: Any,
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    rows, empty, by_length, new_tokens = [], 0, 0, 0
    for i in sorted(answers):
        toks, hit_stop = answers[i]
        new_tokens += len(toks)
        stopped = "eos" if hit_stop else "length"
        text = tokenizer.decode(toks, skip_special_tokens=True).strip()
        if not text:
            empty += 1
            continue
        by_length += stopped == "length"
        r = records[i]
        rows.append(
            {
                "instruction": r["instruction"],
                "input": r.get("input") or "",
                "output": text,
                "source": f"generated:{r.get('source', '')}",
                "index": i,
                "prompt_tokens": len(prompts[i]),
                "response_tokens": len(toks),
                "stopped": stopped,
            }
        )
    counts = {"dropped_empty": empty, "stopped_at_length": by_length, "new_tokens": new_tokens}
    return rows, counts
