"""Requests per second: shared-prefix scoring (route_on=prompt) against per-request scoring.

Same model, same items, same process. The requests are the ones lm-eval builds for the
default run's tasks (``piqa_embedded``, ``hellaswag_embedded``, ``arc_easy_embedded``,
0-shot) over its seeded item subset (the first ``--limit`` of the ``spread`` order); they
are captured once and then scored by each scorer in turn, repeated and interleaved:

* dense SmolLM2: stock ``lm_eval`` ``HFLM`` against ``MindSkipLM(route_on="prompt")``;
* routed (the committed routers): ``MindSkipLM(route_on="request")`` (lm-eval's per-request
  path with real-token masks, the pipeline's setting before issue 14) against
  ``route_on="prompt"``.

It also reports, for the routed model, how many items had choices routed differently
under ``request`` (and under ``prompt``: none by construction), the largest dense
log-likelihood difference between the two paths, and each scorer's accuracy on the items.
Writes ``benchmarks/prompt_scoring_smollm2.{json,md}``::

    python benchmarks/prompt_scoring_smollm2.py --limit 40 --threads 2 1 --repeats 3 --block 16
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
ROUTERS = ROOT / "results/routers/smollm2-135m/attn-seq-n16-c0.5-long-192-e95350"
TASKS = ("piqa_embedded", "hellaswag_embedded", "arc_easy_embedded")
OUT = ROOT / "benchmarks/prompt_scoring_smollm2"


def capture_requests(lm: Any, suite: Any) -> dict[str, tuple[Any, list]]:
    """{task: (task object, lm-eval's Instances)} for the suite's seeded item subsets."""
    import lm_eval

    from mindskip.evaluate.runner import _load_task, _samples_for, _task_manager

    tm = _task_manager(suite)
    out = {}
    for spec in suite.tasks:
        top, leaves = _load_task(tm, spec, suite.seed)
        captured: list = []
        real = lm.loglikelihood

        def capture(requests, disable_tqdm=False, _into=captured):
            _into.extend(requests)
            return [(0.0, False)] * len(requests)

        lm.loglikelihood = capture
        try:
            lm_eval.simple_evaluate(
                model=lm,
                tasks=[top],
                task_manager=tm,
                samples=_samples_for(spec, leaves, suite.seed) or None,
                random_seed=suite.seed,
                numpy_random_seed=suite.seed,
                torch_random_seed=suite.seed,
                fewshot_random_seed=suite.seed,
            )
        finally:
            lm.loglikelihood = real
        out[spec.task] = (leaves[spec.task], captured)
    return out


def item_metrics(task: Any, requests: list, results: list) -> dict[str, float]:
    """Mean of lm-eval's own per-item metrics (``process_results``) over the items."""
    by_doc: dict[int, list] = {}
    for req, res in zip(requests, results, strict=True):
        by_doc.setdefault(req.doc_id, []).append((req.idx, req.doc, res))
    sums: dict[str, float] = {}
    for rows in by_doc.values():
        rows.sort(key=lambda r: r[0])
        for k, v in task.process_results(rows[0][1], [r[2] for r in rows]).items():
            sums[k] = sums.get(k, 0.0) + float(v)
    return {k: v / len(by_doc) for k, v in sums.items()}


def routed_differently(requests: list, decision_log: dict) -> tuple[int, int]:
    """(items whose choices got different sequence decisions, items)."""
    by_doc: dict[int, set] = {}
    for req in requests:
        by_doc.setdefault(req.doc_id, set()).add(decision_log.get(tuple(req.args)))
    return sum(len(s) > 1 for s in by_doc.values()), len(by_doc)


def timed(lm: Any, requests: list) -> tuple[list, float, float]:
    """(results, wall seconds, process CPU seconds) of one ``loglikelihood`` call."""
    w0, c0 = time.perf_counter(), time.process_time()
    res = lm.loglikelihood(requests, disable_tqdm=True)
    return res, time.perf_counter() - w0, time.process_time() - c0


def blocks_of(reqs: list, items: int) -> list[list]:
    """The requests cut into blocks of ``items`` whole items (lm-eval's order kept)."""
    docs = sorted({r.doc_id for r in reqs})
    return [
        [r for r in reqs if r.doc_id in set(docs[i : i + items])]
        for i in range(0, len(docs), items)
    ]


def run_pair(label: str, scorers: dict[str, Any], captured: dict, repeats: int, block: int) -> dict:
    """Score every task with both scorers, block by block (``block`` items): each block
    ``repeats`` times, the two scorers alternating (ABBA), so that a machine whose load
    drifts slows both alike. A scorer's time is the sum over blocks of its best run."""
    out: dict[str, Any] = {"model": label, "tasks": {}}
    names = list(scorers)
    for task_name, (task, reqs) in captured.items():
        best = {n: {"wall": 0.0, "cpu": 0.0} for n in names}
        results: dict[str, list] = {n: [] for n in names}
        ratios = []
        for part in blocks_of(reqs, block):
            walls: dict[str, list[tuple[float, float]]] = {n: [] for n in names}
            for rep in range(repeats):
                for n in names if rep % 2 == 0 else names[::-1]:
                    res, wall, cpu = timed(scorers[n], part)
                    walls[n].append((wall, cpu))
                    if rep == 0:
                        results[n] += res
            for n in names:
                best[n]["wall"] += min(w for w, _ in walls[n])
                best[n]["cpu"] += min(c for _, c in walls[n])
            ratios.append(min(w for w, _ in walls[names[0]]) / min(w for w, _ in walls[names[1]]))
        order = [r for part in blocks_of(reqs, block) for r in part]
        row = {"requests": len(reqs), "items": len({r.doc_id for r in reqs})}
        for n in names:
            row[n] = {
                "wall_s": round(best[n]["wall"], 3),
                "cpu_s": round(best[n]["cpu"], 3),
                "requests_per_s": round(len(reqs) / best[n]["wall"], 2),
                "metrics": item_metrics(task, order, results[n]),
            }
            log = getattr(scorers[n], "decision_log", None)
            if log and any(v is not None for v in log.values()):
                row[n]["items_routed_differently"] = routed_differently(reqs, log)[0]
        a, b = names
        row["speedup"] = round(best[a]["wall"] / best[b]["wall"], 2)
        row["speedup_cpu_time"] = round(best[a]["cpu"] / best[b]["cpu"], 2)
        row["speedup_median_block"] = round(statistics.median(ratios), 2)
        row["max_abs_ll_difference"] = max(
            abs(x[0] - y[0]) for x, y in zip(results[a], results[b], strict=True)
        )
        out["tasks"][task_name] = row
        print(f"{label} {task_name}: {row['speedup']}x wall, {row['speedup_cpu_time']}x cpu")
    return out


def markdown(report: dict) -> str:
    load = report["load_average_1_5_15"]
    lines = [
        "# Shared-prefix scoring (route_on=prompt) vs per-request scoring, SmolLM2-135M",
        "",
        f"`{report['command']}`",
        "",
        f"Batch size {report['batch_size']}, "
        f"{report['limit']} items per task (the default run's seeded subset). Requests are "
        "lm-eval's own, captured once. Timed in blocks of "
        f"{report['block_items']} items, each block {report['repeats']} times with the two "
        "scorers alternating; a scorer's time is the sum of its best run per block. "
        f"Machine load average (1 min) {load['start'][0]:.1f} at the start, "
        f"{load['end'][0]:.1f} at the end (2 cores, shared with other jobs).",
        "",
        "| threads | model | task | requests | per-request req/s | prompt req/s | speedup (wall) "
        "| speedup (CPU time) | median block | max abs ll diff "
        "| items routed differently under request | acc_norm request / prompt |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for part in report["results"]:
        a, b = part["scorers"]
        for task, row in part["tasks"].items():
            diff = row[a].get("items_routed_differently")
            diff = "" if diff is None else f"{diff} of {row['items']}"
            acc = f"{row[a]['metrics'].get('acc_norm', 0):.3f} / "
            acc += f"{row[b]['metrics'].get('acc_norm', 0):.3f}"
            lines.append(
                f"| {part['threads']} | {part['model']} | {task} | {row['requests']} "
                f"| {row[a]['requests_per_s']} "
                f"| {row[b]['requests_per_s']} | {row['speedup']}x | {row['speedup_cpu_time']}x "
                f"| {row['speedup_median_block']}x | {row['max_abs_ll_difference']:.2e} "
                f"| {diff} | {acc} |"
            )
    lines += ["", "All tasks together (all requests, summed best times):", ""]
    for part in report["results"]:
        a, b = part["scorers"]
        n = sum(row["requests"] for row in part["tasks"].values())
        ta = sum(row[a]["wall_s"] for row in part["tasks"].values())
        tb = sum(row[b]["wall_s"] for row in part["tasks"].values())
        lines.append(
            f"- {part['threads']} threads, {part['model']}: {n / ta:.2f} -> {n / tb:.2f} "
            f"requests/s ({ta / tb:.2f}x)"
        )
    lines += [
        "",
        "A task whose choices are mostly one token long gains less: lm-eval's per-request "
        "path already scores all one-token choices of an item from a single forward of the "
        "context (its logits cache), and a short context repeats little in a multi-token "
        "choice.",
        "",
        'Per-request: stock `HFLM` (dense) or `MindSkipLM(route_on="request")` (routed: '
        "lm-eval's path with real-token masks). For the routed model the log-likelihood "
        "difference is the effect of deciding on the prompt instead of on context + choice, "
        "not noise. CPU time is this process's (all its threads): with one thread it is "
        "nearly immune to the other jobs on the machine; with two, a thread that waits for "
        "its descheduled partner spins, so both wall and CPU time suffer under load.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--assets", default=str(ROOT / "results/assets"))
    p.add_argument("--routers", default=str(ROUTERS))
    p.add_argument("--limit", type=int, default=40)
    p.add_argument("--num-fewshot", type=int, default=0, help="the default run's (config.yaml)")
    p.add_argument("--threads", type=int, nargs="+", default=[2], help="one run per count")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument(
        "--block",
        type=int,
        default=16,
        help="items per timed block; a multiple of the batch size keeps every batch full "
        "(short blocks, each timed --repeats times, make the best run robust to load)",
    )
    p.add_argument("--out", default=str(OUT))
    a = p.parse_args(argv)

    from lm_eval.models.huggingface import HFLM

    from mindskip import load_routers
    from mindskip.evaluate import check_suite_available, embedded_suite
    from mindskip.evaluate.hflm import MindSkipLM
    from mindskip.files import read_json, write_json, write_text
    from mindskip.modeling import load_model

    manifest = read_json(Path(a.assets) / "manifest.json", "assets manifest")
    model_asset = next(x for x in manifest["assets"] if x["kind"] == "model")
    suite = embedded_suite(
        Path(a.assets) / "tasks", limit=a.limit, tasks=list(TASKS), num_fewshot=a.num_fewshot
    )
    check_suite_available(suite)
    model, tok = load_model(model_asset["path"], dtype="float32")
    routed, _ = load_model(model_asset["path"], dtype="float32")
    load_routers(routed, a.routers)

    def lm(cls: type, m: Any, **kw: Any) -> Any:
        return cls(pretrained=m, tokenizer=tok, batch_size=a.batch_size, **kw)

    load_before = os.getloadavg()
    captured = capture_requests(lm(MindSkipLM, model, route_on="request"), suite)
    results = []
    for threads in a.threads:
        torch.set_num_threads(threads)
        dense = {"stock": lm(HFLM, model), "prompt": lm(MindSkipLM, model, route_on="prompt")}
        modes = {
            "request": lm(MindSkipLM, routed, route_on="request"),
            "prompt": lm(MindSkipLM, routed, route_on="prompt"),
        }
        for label, scorers in (("dense", dense), ("routed", modes)):
            part = run_pair(f"{label} ({threads} threads)", scorers, captured, a.repeats, a.block)
            results.append(part | {"model": label, "threads": threads, "scorers": list(scorers)})
    report = {
        "command": "python " + " ".join(shlex.quote(x) for x in sys.argv),
        "model": {"path": model_asset["path"], "sha256": model_asset.get("sha256")},
        "routers": a.routers,
        "threads": a.threads,
        "batch_size": a.batch_size,
        "limit": a.limit,
        "repeats": a.repeats,
        "block_items": a.block,
        "load_average_1_5_15": {"start": load_before, "end": os.getloadavg()},
        "torch": torch.__version__,
        "results": results,
    }
    write_json(f"{a.out}.json", report)
    write_text(f"{a.out}.md", markdown(report))
    print(f"wrote {a.out}.json and {a.out}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
