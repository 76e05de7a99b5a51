"""The Python parts of ``benchmarks/gpu_h200.sh`` (run it, not this): correctness on random
weights, one router-training step against full fine-tuning, and the summary.

    python benchmarks/gpu_h200.py checks  --out DIR [--model llama3-8b] [--layers 8]
    python benchmarks/gpu_h200.py train   --out DIR [--model llama3-8b] [--layers 32]
    python benchmarks/gpu_h200.py tiny-config DIR      # the smoke mode's shape
    python benchmarks/gpu_h200.py summary DIR

Needs only torch, transformers and this checkout (PYTHONPATH): no tokenizer, data or
network. Each part writes one JSON file into ``--out`` and prints a short verdict.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

UNITS = ("attn", "mlp", "block")
TINY = dict(
    vocab_size=97,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=6,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=512,
    pad_token_id=0,
    bos_token_id=1,
    eos_token_id=2,
)


def build(model: str, layers: int | None, device: str, dtype: str, seed: int = 0):
    """Random weights of a named shape or a config folder, ``layers`` decoder layers."""
    import torch
    from transformers import AutoModelForCausalLM

    from mindskip.profile import shape_config

    config = shape_config(model)
    if layers:
        config.num_hidden_layers = layers
    torch.manual_seed(seed)
    with torch.device(device):
        m = AutoModelForCausalLM.from_config(
            config, dtype=getattr(torch, dtype), attn_implementation="sdpa"
        )
    return m.eval()


def _diff(a: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
    a, b = a.float(), b.float()
    scale = float(b.abs().max().clamp_min(1e-6))
    return {"max_abs": float((a - b).abs().max()), "rel": float((a - b).abs().max()) / scale}


# --------------------------------------------------------------------------- checks
def checks(args: argparse.Namespace) -> dict[str, Any]:
    """forced execute == dense, forced skip == hand-removed, mixed rows == each row alone,
    cached == uncached, captured decode == eager decode (tokens)."""
    import torch

    from mindskip import MindSkipConfig, apply_mindskip, forced_decisions, remove_sublayers

    dense = build(args.model, args.layers, args.device, args.dtype)
    n = dense.config.num_hidden_layers
    routed = tuple(range(1, n - 1))
    pattern = routed[::2]
    g = torch.Generator().manual_seed(0)
    x = torch.randint(3, dense.config.vocab_size, (4, args.length), generator=g).to(args.device)
    rows = torch.tensor([True, False, True, False])
    out: dict[str, Any] = {"layers": n, "dtype": args.dtype, "device": args.device, "cases": []}
    tol = 1e-5 if args.dtype == "float32" else args.tol

    def case(name: str, ok: bool, **numbers: Any) -> None:
        out["cases"].append({"check": name, "ok": bool(ok), **numbers})
        print(f"[checks] {'ok  ' if ok else 'FAIL'} {name} {numbers}", flush=True)

    with torch.inference_mode():
        want = dense(x).logits
        for unit in UNITS:
            for routing in ("sequence", "token"):
                cfg = MindSkipConfig(unit=unit, routing=routing, layers=routed)
                m = apply_mindskip(_shared(dense), cfg)
                with forced_decisions(m, "execute"):
                    d = _diff(m(x).logits, want)
                case(f"{unit}/{routing}: forced execute == dense", d["max_abs"] == 0, **d)
                with forced_decisions(m, {i: False for i in pattern}):
                    got = m(x).logits
                ref = remove_sublayers(_shared(dense), pattern, unit)(x).logits
                d = _diff(got, ref)
                case(f"{unit}/{routing}: forced skip == hand-removed", d["max_abs"] == 0, **d)
            m = apply_mindskip(_shared(dense), MindSkipConfig(unit=unit, layers=routed))
            mixed = {i: rows.roll(i) for i in pattern}
            with forced_decisions(m, mixed):
                both = m(x).logits
            worst = 0.0
            for b in range(4):
                with forced_decisions(m, {i: d[b : b + 1] for i, d in mixed.items()}):
                    worst = max(worst, _diff(both[b : b + 1], m(x[b : b + 1]).logits)["rel"])
            case(f"{unit}: mixed rows == each row alone", worst <= tol, rel=worst, tol=tol)
            _cached_case(m, mixed, x, tol, case, unit)
            _captured_case(m, mixed, x, args, case, f"{unit}/sequence")
            token_cfg = MindSkipConfig(unit=unit, routing="token", layers=routed)
            t = apply_mindskip(_shared(dense), token_cfg)
            _captured_case(t, {i: _checker for i in pattern}, x, args, case, f"{unit}/token")
    out["ok"] = all(c["ok"] for c in out["cases"] if isinstance(c, dict))
    return out


def _checker(layer: Any, batch: int, length: int) -> torch.Tensor:
    """Token decisions that mix executing and skipping tokens (and rows at decode), made on
    the layer's device (a host-to-device copy cannot be captured in a CUDA graph)."""
    import torch

    device = layer.router.proj.weight.device
    return (
        torch.arange(batch * length, device=device).view(batch, length) + layer.layer_idx
    ) % 2 == 0


def _captured_case(m, force, x, args, case, name: str) -> None:
    """Greedy tokens of the captured decode step == the same step run eagerly."""
    import torch

    from mindskip import forced_decisions
    from mindskip.decode import CapturedDecoder

    decoder = CapturedDecoder(m, mode=args.decode_mode)
    eager = CapturedDecoder(m, mode="eager")
    with forced_decisions(m, force):
        cap = decoder.generate(x, args.new_tokens)
        cap = decoder.generate(x, args.new_tokens)  # the slot's step again (a replay)
        ref = eager.generate(x, args.new_tokens)
    steps = max(args.new_tokens - 1, 1)
    case(
        f"{name}: captured decode ({cap.mode}) == eager tokens",
        torch.equal(cap.tokens, ref.tokens),
        mode=cap.mode,
        reason=cap.reason,
        pattern=cap.pattern,
        captured_step_ms=round(1e3 * cap.decode_s / steps, 3),
        eager_step_ms=round(1e3 * ref.decode_s / steps, 3),
    )
    decoder.release()
    eager.release()


def _cached_case(m, mixed, x, tol, case, unit) -> None:
    """Logits of 4 cached decode steps == recomputing the whole sequence each step."""
    import torch
    from transformers import DynamicCache

    from mindskip import forced_decisions
    from mindskip.capture import cache_kwarg

    kw, cache = cache_kwarg(m), DynamicCache(config=m.config)
    worst, seq = 0.0, x
    with forced_decisions(m, mixed):
        logits = m(x, use_cache=True, **{kw: cache}).logits[:, -1:]
        for _ in range(4):
            tok = logits.argmax(-1)
            seq = torch.cat([seq, tok], dim=1)
            logits = m(tok, use_cache=True, **{kw: cache}).logits[:, -1:]
            full = m(seq, use_cache=False).logits[:, -1:]
            worst = max(worst, _diff(logits, full)["rel"])
    case(f"{unit}: cached == uncached (4 steps)", worst <= tol, rel=worst, tol=tol)


def _shared(model):
    memo = {id(t): t for t in (*model.parameters(), *model.buffers())}
    return copy.deepcopy(model, memo)


# --------------------------------------------------------------------------- training
def word_tokenizer(vocab_size: int) -> Any:
    """A word-level tokenizer over ``w0 ... wN`` (no files, no network): the training
    step's cost does not depend on the text, only on the token counts."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2} | {f"w{i}": i + 3 for i in range(vocab_size - 3)}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", bos_token="<s>", eos_token="</s>"
    )


def train(args: argparse.Namespace) -> dict[str, Any]:
    """One router-training step vs one full fine-tuning step (AdamW, bf16 weights and
    optimizer states, no fp32 master copy), same routed model and batch. On OOM the
    model is rebuilt with half the layers, and the result says so."""
    import torch

    from mindskip import MindSkipConfig
    from mindskip.profile import shape_config
    from mindskip.train import benchmark_training_cost

    g = torch.Generator().manual_seed(0)
    vocab = min(shape_config(args.model).vocab_size, 10_000)
    words = [f"w{int(i)}" for i in torch.randint(0, vocab - 3, (80 * 64,), generator=g)]
    n_in, n_out = args.max_length // 2, args.max_length // 2 - 8  # "###" headers: ~8 tokens
    records = [
        {"instruction": " ".join(words[i * 80 : i * 80 + n_in]), "input": "",
         "output": " ".join(words[i * 80 + 40 : i * 80 + 40 + n_out])}
        for i in range(args.micro_batch * 2)
    ]  # fmt: skip
    layers, attempts = args.layers or shape_config(args.model).num_hidden_layers, []
    while layers >= 2:
        model = build(args.model, layers, args.device, args.dtype)
        n = model.config.num_hidden_layers
        cfg = MindSkipConfig(unit="attn", routing="sequence", num_routed=min(16, n - 2))
        try:
            res = benchmark_training_cost(
                model, word_tokenizer(vocab), records, cfg, micro_batch=args.micro_batch,
                max_length=args.max_length, steps=args.steps, warmup_steps=1,
            )  # fmt: skip
            res["layers"] = n
            res["attempts"] = attempts
            return res
        except torch.cuda.OutOfMemoryError as e:
            attempts.append({"layers": n, "error": f"OutOfMemoryError: {str(e)[:160]}"})
            print(f"[train] {n} layers: out of memory; retrying with {n // 2}", flush=True)
        finally:
            del model
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        layers //= 2
    return {"error": "out of memory at every layer count", "attempts": attempts}


# --------------------------------------------------------------------------- summary
def summary(folder: Path) -> str:
    """SUMMARY.md: the checks, the profile tables' headlines, the training ratio."""
    lines = ["# gpu_h200.sh summary", ""]
    parts = folder / "parts.tsv"
    if parts.exists():
        lines += ["| part | exit | seconds |", "|---|---|---|"]
        lines += [f"| {' | '.join(r.split())} |" for r in parts.read_text().splitlines()]
        lines.append("")
    checks = _json(folder / "checks.json")
    if checks:
        bad = [c["check"] for c in checks["cases"] if not c["ok"]]
        lines.append(f"Checks ({checks['layers']} layers, {checks['dtype']}): "
                     f"{len(checks['cases']) - len(bad)}/{len(checks['cases'])} ok")  # fmt: skip
        lines += [f"- FAIL {b}" for b in bad] + [""]
    for name in ("prefill", "captured", "eager"):
        md = folder / name / "profile.md"
        if md.exists():
            text = md.read_text().split("## Memory")[0]
            lines += [f"## profile: {name}", "", *text.splitlines()[2:], ""]
    cost = _json(folder / "train.json")
    if cost and "full" in cost:
        r, f = cost["routers"], cost["full"]
        lines.append(
            f"Training step ({cost['layers']} layers, batch {cost['batch_shape']}): routers "
            f"{r['step_s_mean']:.3f} s, {r['peak_bytes'] / 2**30:.1f} GiB peak; full "
            f"{f['step_s_mean']:.3f} s, {f['peak_bytes'] / 2**30:.1f} GiB peak "
            f"({cost['full_over_routers_step_time']:.2f}x the time)."
        )
    elif cost:
        lines.append(f"Training: {cost.get('error')}")
    return "\n".join(lines) + "\n"


def _json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("part", choices=("checks", "train", "tiny-config", "summary"))
    ap.add_argument("folder", nargs="?", type=Path)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--model", default="llama3-8b")
    ap.add_argument("--layers", type=int, default=None)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--length", type=int, default=64, help="checks: prompt length")
    ap.add_argument("--new-tokens", type=int, default=16, help="checks: decoded tokens")
    ap.add_argument("--tol", type=float, default=0.05, help="checks: bf16 relative tolerance")
    ap.add_argument("--decode-mode", default="auto", help="checks: CapturedDecoder mode")
    ap.add_argument("--micro-batch", type=int, default=8)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--steps", type=int, default=3)
    a = ap.parse_args()
    if a.part == "tiny-config":  # a config.json that AutoConfig reads (no imports here)
        a.folder.mkdir(parents=True, exist_ok=True)
        config = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], **TINY}
        (a.folder / "config.json").write_text(json.dumps(config, indent=1) + "\n")
        return 0
    if a.part == "summary":
        text = summary(a.folder)
        (a.folder / "SUMMARY.md").write_text(text)
        print(text)
        return 0
    a.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    result = checks(a) if a.part == "checks" else train(a)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    (a.out / f"{a.part}.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    return 0 if result.get("ok", "error" not in result) else 1


if __name__ == "__main__":
    raise SystemExit(main())
