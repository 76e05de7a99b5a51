"""Build every embedded asset into one folder and summarise it in ``manifest.json``.

Layout of ``out`` (default ``results/assets``)::

    models/smollm2-135m-instruct/   converted model + provenance.json
    bigbench/<task>.json            BIG-bench 1.0.0 task files + manifest.json
    tasks/                          lm-eval YAML, data/*.jsonl, manifest.json
    train/bigbench_heldout.jsonl    instruction records (+ .manifest.json)
    manifest.json                   every asset: path, source package+version, sha256, n
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._io import read_json, write_json
from .assets import convert_smollm2, extract_bigbench, load_gsm8k, load_mmlu
from .instructions import DEFAULT_TRAIN_TASKS, build_instruction_set
from .tasks import DEFAULT_BIGBENCH_TASKS, eval_jsonl_files, write_task_suite

log = logging.getLogger(__name__)

MODEL_SUBDIR = "models/smollm2-135m-instruct"
TRAIN_FILE = "train/bigbench_heldout.jsonl"


def prepare_assets(
    out: Path,
    *,
    eval_tasks: Sequence[str] = DEFAULT_BIGBENCH_TASKS,
    train_tasks: Sequence[str] = DEFAULT_TRAIN_TASKS,
    mmlu: bool = True,
    gsm8k: bool = True,
    model: bool = True,
    per_task_cap: int = 300,
    seed: int = 0,
) -> dict[str, Any]:
    """Build the model folder, BIG-bench files, task suite and training set under ``out``.

    Each step is cached where it is expensive (model conversion, BIG-bench download);
    task and training files are rewritten (seconds) and come out byte-identical for the
    same inputs. Returns the top-level manifest (also written to ``out/manifest.json``),
    including the seconds each step took.
    """
    out = Path(out)
    overlap = set(eval_tasks) & set(train_tasks)
    if overlap:
        raise ValueError(f"tasks {sorted(overlap)} are both evaluation and training tasks")
    seconds: dict[str, float] = {}

    def timed(step: str, fn, *args, **kwargs):
        t0 = time.perf_counter()
        result = fn(*args, **kwargs)
        seconds[step] = round(time.perf_counter() - t0, 1)
        log.info("step %s: %.1f s", step, seconds[step])
        return result

    assets = [_model_asset(timed("model", convert_smollm2, out / MODEL_SUBDIR))] if model else []
    bb = timed("bigbench", extract_bigbench, [*eval_tasks, *train_tasks], out)
    bb_files = {t: Path(bb["tasks"][t]["path"]) for t in [*eval_tasks, *train_tasks]}

    def load_eval_data():
        return (load_mmlu() if mmlu else None), (load_gsm8k() if gsm8k else None)

    mmlu_data, gsm8k_data = timed("mmlu_gsm8k", load_eval_data)
    tasks_dir = out / "tasks"
    suite = timed(
        "tasks",
        write_task_suite,
        tasks_dir,
        bigbench_files={t: bb_files[t] for t in eval_tasks},
        bigbench_source={"package": "bigbench", "version": bb["source"]["version"]},
        mmlu=mmlu_data,
        gsm8k=gsm8k_data,
    )
    assets += _eval_assets(suite)
    train = timed(
        "instructions",
        build_instruction_set,
        {t: bb_files[t] for t in train_tasks},
        eval_jsonl_files(tasks_dir),
        out / TRAIN_FILE,
        per_task_cap=per_task_cap,
        seed=seed,
    )
    assets.append(_train_asset(train))
    manifest = {
        "out": str(out.resolve()),
        "model_dir": str((out / MODEL_SUBDIR).resolve()) if model else None,
        "tasks_dir": str(tasks_dir.resolve()),
        "train_file": train["path"],
        "eval_tasks": list(suite["tasks"]),
        "mmlu_junk_rows": mmlu_data[1]["n_junk"] if mmlu_data else None,
        "bigbench_source": bb["source"],
        "assets": assets,
        "seconds": seconds,
    }
    write_json(out / "manifest.json", manifest)
    return manifest


def _model_asset(model_dir: Path) -> dict[str, Any]:
    prov = read_json(model_dir / "provenance.json")
    return {
        "name": "smollm2-135m-instruct",
        "kind": "model",
        "path": str(model_dir.resolve()),
        "source": {"package": prov["source_package"], "version": prov["source_version"]},
        "sha256": prov["files"].get("model.safetensors"),
        "source_sha256": prov["gguf_sha256"],
        "n": prov["num_parameters"],
    }


def _eval_assets(suite: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for name, rec in suite["tasks"].items():
        src = rec["source"]
        for split, info in rec["splits"].items():
            out.append(
                {
                    "name": f"{name}:{split}",
                    "kind": "eval",
                    "path": info["path"],
                    "yaml": rec["yaml"],
                    "source": {"package": src.get("package"), "version": src.get("version")},
                    "sha256": info["sha256"],
                    "n": info["n"],
                }
            )
    return out


def _train_asset(train: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "bigbench_heldout",
        "kind": "train",
        "path": train["path"],
        "source": train["source"],
        "sha256": train["sha256"],
        "n": train["n"],
        "overlaps_dropped": train["overlaps_dropped"],
    }
