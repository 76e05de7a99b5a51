"""Issue 5 real run on the converted SmolLM2-135M-Instruct (CPU, one thread).

    .venv/bin/python benchmarks/baselines_smollm2.py rank
    .venv/bin/python benchmarks/baselines_smollm2.py calibrate --ratios 0.125 0.25 --modes per_layer

``rank`` writes the attention-drop ranking (``importance-attn.json``); ``calibrate`` gives
seeded random routers on the last ``--num-routed`` layers before the final one, calibrates
them to each requested skip ratio on calibration texts and measures the realised ratio on
held-out texts (``calibration-random-routers-n{N}-{mode}-{ratio}.json``). Texts are records
from the end of the embedded training set (instruction, input and output joined), split
into calibration and held-out halves; none are evaluation items.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from mindskip import (
    MindSkipConfig,
    apply_mindskip,
    decoder_layers,
    mindskip_layers,
    reset_routing_stats,
    routing_stats,
)
from mindskip.baselines import (
    calibrate_thresholds,
    drop_layers,
    load_ranking,
    measure_skip_ratio,
    ranking_record,
    rates_from_stats,
    realised_skip_ratio,
    save_ranking,
    sequence_skip_ratios,
)
from mindskip.methods import RandomSkip, StaticDrop, prepare_method
from mindskip.provenance import versions

ASSETS = Path("results/assets")
MODEL = ASSETS / "models/smollm2-135m-instruct"
DATA = ASSETS / "train/embedded.jsonl"
OUT = Path("results/baselines/smollm2-135m-instruct")


def texts(path: Path, n_calib: int, n_held: int) -> tuple[list[str], list[str], str]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    pool = rows[-(n_calib + n_held) :]
    joined = [
        "\n\n".join(p for p in (r["instruction"], r["input"], r["output"]) if p.strip())
        for r in pool
    ]
    desc = (
        f"{path} records [-{n_calib + n_held}:] (instruction/input/output joined by blank "
        f"lines); calibration = first {n_calib}, held-out = last {n_held}"
    )
    return joined[:n_calib], joined[n_calib:], desc


def load(model_dir: Path):
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(model_dir)


def model_id(model_dir: Path) -> str:
    prov = json.loads((model_dir / "provenance.json").read_text())
    return f"{prov['model']} (model.safetensors sha256 {prov['files']['model.safetensors']})"


def rank(args: argparse.Namespace) -> None:
    model, tok = load(args.model)
    calib, _, desc = texts(args.data, args.n_calib, args.n_held)
    t0 = time.perf_counter()
    record = ranking_record(
        model,
        tok,
        calib,
        args.unit,
        args.max_length,
        args.batch_size,
        model_id=model_id(args.model),
        data=desc,
    )
    record["seconds"] = round(time.perf_counter() - t0, 1)
    path = save_ranking(record, args.out / f"importance-{args.unit}.json")
    print(f"{path}  ({record['seconds']} s, {record['calibration']['n_tokens']} tokens)")
    for k, row in enumerate(record["ranking"], 1):
        print(f"{k:2d}  layer {row['layer']:2d}  cos {row['similarity']:.4f}")


def random_routers(model: torch.nn.Module, seed: int, scale: float) -> None:
    g = torch.Generator().manual_seed(seed)
    for layer in mindskip_layers(model).values():
        w = layer.router.proj.weight
        with torch.no_grad():
            w.copy_(torch.randn(w.shape, generator=g) * scale / w.shape[1] ** 0.5)


def calibrate(args: argparse.Namespace) -> None:
    model, tok = load(args.model)
    calib, held, desc = texts(args.data, args.n_calib, args.n_held)
    cfg = MindSkipConfig(unit=args.unit, num_routed=args.num_routed)
    apply_mindskip(model, cfg)
    random_routers(model, args.seed, args.scale)
    kw = dict(max_length=args.max_length, batch_size=args.batch_size)
    for mode in args.modes:
        for ratio in args.ratios:
            history: list[float] = []
            t0 = time.perf_counter()
            taus = calibrate_thresholds(model, tok, calib, ratio, mode=mode, history=history, **kw)
            seconds = time.perf_counter() - t0
            reset_routing_stats(model)
            per_seq = sequence_skip_ratios(model, tok, held, **kw)
            held_ratio = realised_skip_ratio(model)
            held_se = float(per_seq.std() / len(per_seq) ** 0.5)
            stats = routing_stats(model)
            record = {
                "model_id": model_id(args.model),
                "routers": f"random: seed {args.seed}, N(0, ({args.scale}/sqrt(hidden))^2)",
                "config": cfg.to_dict(),
                "mode": mode,
                "target_skip_ratio": ratio,
                "thresholds": {str(i): t for i, t in taus.items()},
                "calibration_passes": history,
                "held_out_skip_ratio": held_ratio,
                "held_out_standard_error": held_se,
                "held_out_per_sequence_sd": float(per_seq.std()),
                "held_out_skip_per_layer": {str(i): 1 - c for i, c in stats.total.items()},
                "data": desc,
                "max_length": args.max_length,
                "seconds": round(seconds, 1),
                "versions": versions(),
            }
            if args.baselines:
                record["same_path_baselines"] = baselines(model, tok, held, ratio, args, kw)
            name = f"calibration-random-routers-n{args.num_routed}-{mode}-{ratio}.json"
            (args.out / name).parent.mkdir(parents=True, exist_ok=True)
            (args.out / name).write_text(json.dumps(record, indent=2) + "\n")
            print(
                f"{mode:9s} target {ratio:.3f}  calib passes {[round(h, 4) for h in history]}  "
                f"held-out {held_ratio:.4f} +- {held_se:.4f} (1 s.e.)  ({seconds:.0f} s)"
            )


def baselines(model, tok, held, ratio, args, kw) -> dict[str, float]:
    """Random (router's held-out rates) and static drop (k = round(ratio * L)), same path."""
    rates = rates_from_stats(model)
    out: dict[str, float] = {}
    fresh, _ = load(args.model)
    spec = RandomSkip(unit=args.unit, rates=rates, seed=0)
    out[spec.slug] = measure_skip_ratio(prepare_method(fresh, spec), tok, held, **kw)
    ranking = args.out / f"importance-{args.unit}.json"
    if ranking.exists():
        k = round(ratio * len(decoder_layers(fresh)))
        spec = StaticDrop(unit=args.unit, layers=drop_layers(load_ranking(ranking), k))
        out[spec.slug] = measure_skip_ratio(prepare_method(fresh, spec), tok, held, **kw)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("command", choices=["rank", "calibrate"])
    p.add_argument("--model", type=Path, default=MODEL)
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--unit", default="attn")
    p.add_argument("--n-calib", type=int, default=64)
    p.add_argument("--n-held", type=int, default=128)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--num-routed", type=int, default=28)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scale", type=float, default=3.0)
    p.add_argument("--ratios", type=float, nargs="+", default=[0.125, 0.25, 0.375, 0.5])
    p.add_argument("--modes", nargs="+", default=["per_layer"])
    p.add_argument("--baselines", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(1)
    rank(args) if args.command == "rank" else calibrate(args)


if __name__ == "__main__":
    main()
