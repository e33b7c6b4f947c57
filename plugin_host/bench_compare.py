"""`samstream bench --compare A.json B.json`: B - A of two separation reports, per class and mean."""
from __future__ import annotations

import json
from pathlib import Path

from .bench_report import LABELS, METHODS, pair


def load_results(path: str) -> dict:
    file = Path(path)
    if not file.is_file():
        raise ValueError(f"{path}: no such results file (samstream bench writes DIR/results.json)")
    try:
        results = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: not JSON ({error})") from None
    if not (isinstance(results, dict) and isinstance(results.get("mean"), dict)
            and isinstance(results.get("per_class"), dict)):
        raise ValueError(f"{path}: not a samstream bench results.json (no 'mean' and 'per_class')")
    return results


def difference(a: dict | None, b: dict | None, key: str) -> str:
    """B - A of one method's (extract, remove) pair; '–' where either run lacks it."""
    try:
        return pair([float(y) - float(x) for x, y in zip(a[key], b[key], strict=True)])
    except (TypeError, KeyError, ValueError):
        return "–"


def compare(path_a: str, path_b: str) -> str:
    a, b = load_results(path_a), load_results(path_b)
    methods = [method for method in METHODS if method in a["mean"] or method in b["mean"]]
    lines = [f"B - A in dB, extract / remove. A = {path_a}, B = {path_b}", "",
             "| mean | SI-SDRi | SDRi |", "|---|---|---|"]
    lines += [f"| {LABELS[method]} | {difference(a['mean'].get(method), b['mean'].get(method), 'si_sdri')} | "
              f"{difference(a['mean'].get(method), b['mean'].get(method), 'sdri')} |" for method in methods]
    lines += ["", "| class (SI-SDRi) | " + " | ".join(LABELS[method] for method in methods) + " |",
              "|---" * (len(methods) + 1) + "|"]
    for name in sorted(set(a["per_class"]) | set(b["per_class"])):
        if name not in a["per_class"] or name not in b["per_class"]:
            lines.append(f"| {name} | only in {'B' if name not in a['per_class'] else 'A'} |")
            continue
        first, second = a["per_class"][name], b["per_class"][name]
        lines.append(f"| {name} | " + " | ".join(difference(first.get(method), second.get(method), "si_sdri")
                                                 for method in methods) + " |")
    scalars = [("latency ms", ("latency", "ms"))]
    scalars += [(f"real-time factor, {LABELS.get(key, key)}", ("real_time_factor", key))
                for key in sorted(set(a.get("real_time_factor", {})) & set(b.get("real_time_factor", {})))]
    scalars += [(f"per-hop {quantile}, {steps} step(s), ms", ("hop_compute_ms", steps, quantile))
                for steps in ("1", "2") for quantile in ("p50", "p99", "max")]
    scalars += [("judge Spearman, every estimate", ("judge", "spearman")),
                ("judge Spearman, the model's own", ("judge", "spearman_model_outputs")),
                ("judge mean absolute error, dB", ("judge", "mean_abs_error_db"))]
    lines.append("")
    for label, keys in scalars:
        values = []
        for results in (a, b):
            for key in keys:
                results = results.get(key) if isinstance(results, dict) else None
            values.append(results)
        if all(isinstance(value, int | float) for value in values):
            lines.append(f"{label}: {values[0]:.3f} -> {values[1]:.3f} ({values[1] - values[0]:+.3f})")
    return "\n".join(lines)
