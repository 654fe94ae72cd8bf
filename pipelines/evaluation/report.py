"""The report of an evaluation: ``metrics.json`` (nested), ``report.md`` and the PNG plots."""

from __future__ import annotations

import json
from pathlib import Path

from .plots import write_plots
from .runs import spiking_runs

__all__ = ["nested_metrics", "render_markdown", "write_report"]


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.2f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows] + [""]


def _accuracy_section(metrics: dict) -> list[str]:
    main = metrics["snn"]
    ann = _pct(metrics.get("ann.top1"))
    if metrics.get("ann.top1") is None:
        ann += " (no float network given: --checkpoint FILE or --pretrained true adds its row)"
    head = (
        f"ANN {ann} · QANN {_pct(metrics.get('qann.top1'))} · "
        f"SNN–QANN agreement {_pct(main.get('agreement_with_qann'))} · "
        f"max |logit difference| {main.get('max_abs_logit_diff', float('nan')):.3g}"
    )
    lines = ["## Accuracy (top-1 %, prediction = mean of the outputs of steps 1..t)", "", head, ""]
    for run in spiking_runs(metrics):
        steps = run["top1_at_t"]
        lines += _table(
            ["SNN", *(f"t={t}" for t in steps)], [[run["label"], *map(_pct, steps.values())]]
        )
    return lines


def _binary_ratio(metrics: dict, label: str) -> str:
    """`` The binary run here, N=1,T=8 (96.94 %), costs 3.78× its energy.`` for the
    multi-level run ``label`` (the main SNN or a sweep entry), or ``""``."""
    binary = metrics["binary"]
    runs = [metrics["snn"], *metrics.get("sweep", [])]
    run = next((r for r in runs if r["label"] == label), None)
    if run is None or label == binary["label"] or not run["energy"]["total"]:
        return ""
    ratio = binary["energy"]["total"] / run["energy"]["total"]
    return (
        f" The binary run here, {binary['label']} ({_pct(binary['top1'])} %), costs "
        f"{ratio:.2f}× its energy."
    )


def _energy_section(metrics: dict) -> list[str]:
    costs = {**metrics["costs"]["ops_pj"], **metrics["costs"]["memory_pj"]}
    runs = [("ANN (dense MACs)", metrics["ann_energy"])]
    runs += [(f"SNN {r['label']}", r["energy"]) for r in spiking_runs(metrics)]
    lines = ["## Energy per image (µJ)", "", "Costs (pJ): "]
    lines[-1] += ", ".join(f"{k} {v:g}" for k, v in costs.items()) + "."
    lines += [""] + _table(
        ["model", "ops", "memory", "total"],
        [[name, *(f"{e[k] / 1e6:.3f}" for k in ("ops", "memory", "total"))] for name, e in runs],
    )
    for m in metrics.get("matched_energy", []):
        if m["ratio"] is None:
            lines.append(
                f"- {m['multi_level']} ({_pct(m['multi_level_top1'])} %): none of the binary "
                f"(N = 1) SNNs evaluated comes within {_pct(m['tolerance'])} points of its "
                "accuracy, so there is no binary SNN of the same accuracy to compare energy with "
                "(add longer ones with --sweep, e.g. 1x32)."
                + _binary_ratio(metrics, m["multi_level"])
            )
        else:
            lines.append(
                f"- {m['multi_level']} ({_pct(m['multi_level_top1'])} %) against the cheapest "
                f"binary SNN at matched accuracy, {m['binary']} ({_pct(m['binary_top1'])} %): "
                f"binary / multi-level energy = {m['ratio']:.2f}× with memory, "
                f"{m['ratio_ops']:.2f}× ops only."
            )
    return lines + [""]


def _layer_section(run: dict) -> list[str]:
    total = run["activity"]["total"]
    summary = (
        f"Per image: synaptic operations {total['synops']:.4g}, MACs {total['macs']:.4g}, "
        f"membrane updates {total['membrane_updates']:.4g}, events {total['events']:.4g}. "
        f"Events per neuron per step {total['events_per_neuron_step']:.4f}, mean payload "
        f"{total['mean_payload']:.3f}, silent neurons {_pct(total['silent_fraction'])} %, "
        f"mean latency {run['latency']['mean']:.2f} steps."
    )
    lines = [f"### SNN {run['label']}", "", summary, ""]
    lines += _table(
        ["neuron layer", "events/neuron/step", "mean payload", "silent %"],
        [
            [
                n,
                f"{a['events_per_neuron_step']:.4f}",
                f"{a['mean_payload']:.3f}",
                _pct(a["silent_fraction"]),
            ]  # fmt: skip
            for n, a in run["activity"]["neurons"].items()
        ],
    )
    lines += _table(
        ["synaptic layer", "input", "synops", "MACs", "energy µJ"],
        [
            [
                n,
                "spikes" if s["spiking"] else "analog",
                f"{s['synops']:.4g}",
                f"{s['macs']:.4g}",
                f"{run['energy']['layers'][n]['total'] / 1e6:.4f}",
            ]  # fmt: skip
            for n, s in run["activity"]["synapses"].items()
        ],
    )
    return lines


def render_markdown(metrics: dict) -> str:
    """``report.md``: the evaluation as tables a person can read."""
    main = metrics["snn"]
    lines = ["# Evaluation report", ""]
    context = metrics.get("context") or {}
    if context:
        lines += [
            f"- Model folder: {context['model_dir']}",
            f"- ANN: {context['ann_source'] or 'not given (--checkpoint FILE, --pretrained true)'}",
            f"- Data: {context['dataset']}, {context['split']} split, {main['images']} images",
            f"- Machine: {context['machine']}",
            "",
        ]
    source = metrics["costs"]["source"]
    lines += [
        f"QANN levels L = {metrics['levels']}. Energies in µJ per image (what is counted: "
        f"multispike's docs/method.md §6; the costs: {source})."
    ]
    lines += ["", *_accuracy_section(metrics), *_energy_section(metrics), "## Per layer", ""]
    lines += [line for run in spiking_runs(metrics) for line in _layer_section(run)]
    if metrics.get("sweep"):
        lines += ["## Accuracy against energy", ""]
        lines += _table(
            ["N, T", "images", "top-1 %", "synops", "energy µJ"],
            [
                [
                    r["label"],
                    str(r["images"]),
                    _pct(r["top1"]),
                    f"{r['synops']:.4g}",
                    f"{r['energy']['total'] / 1e6:.3f}",
                ]  # fmt: skip
                for r in metrics["sweep"]
            ],
        )
    if metrics.get("robustness"):
        levels = list(next(iter(metrics["robustness"].values())))
        lines += ["## Robustness (top-1 % under input noise)", ""]
        lines += _table(
            ["model", *(f"{float(v):g}" for v in levels)],
            [[name, *map(_pct, by.values())] for name, by in metrics["robustness"].items()],
        )
    if metrics.get("neurobench"):
        lines += _neurobench_section(metrics)
    if metrics.get("codes"):
        lines += _codes_section(metrics["codes"])
    lines += [f"![{p}]({p})" for p in metrics.get("plots", [])]
    return "\n".join(lines) + "\n"


def _codes_section(rows: list[dict]) -> list[str]:
    """Three spike codes of one QANN (definitions: pipelines/codes.py)."""
    lines = ["## Spike codes of the QANN", ""]
    lines += _table(
        ["code", "", "top-1 %", "events / image", "synops / image", "payload bits",
         "latency (steps)", "energy µJ"],
        [[r["code"], r["label"], _pct(r["top1"]), f"{r['events']:.5g}", f"{r['synops']:.4g}",
          str(r["payload_bits"]), str(r["latency_steps"]), f"{r['energy']['total'] / 1e6:.3f}"]
         for r in rows],
    )  # fmt: skip
    kinds = {"input": "input noise", "deletion": "spike deletion", "jitter": "jitter"}
    header, cells = ["code"], {r["label"]: [r["code"]] for r in rows}
    for kind, title in kinds.items():
        levels = next(list(r["robustness"][kind]) for r in rows if r["robustness"][kind])
        header += [f"{title} {float(v):g}" for v in levels if float(v) > 0]
        for r in rows:
            by = r["robustness"][kind] or {}
            cells[r["label"]] += [_pct(by.get(v)) for v in levels if float(v) > 0]
    return lines + ["Top-1 % under perturbation:", ""] + _table(header, list(cells.values()))


def _neurobench_section(metrics: dict) -> list[str]:
    """NeuroBench's values beside multispike's own (definitions: pipelines/neurobench.py)."""
    nb, ours = metrics["neurobench"], metrics["snn"]["activity"]["total"]
    rows = [
        ["ClassificationAccuracy", f"{100 * nb['ClassificationAccuracy']:.2f} %",
         f"{100 * metrics['snn']['top1']:.2f} %"],
        ["ActivationSparsity", f"{nb['ActivationSparsity']:.4f}",
         f"{ours['activation_sparsity']:.4f}"],
        ["Effective_MACs + Effective_ACs", f"{nb['Effective_MACs'] + nb['Effective_ACs']:.5g}",
         f"{ours['macs'] + ours['synops']:.5g} (macs + synops)"],
        ["Dense", f"{nb['Dense']:.5g}", ""],
        ["MembraneUpdates", f"{nb['MembraneUpdates']:.5g}", f"{ours['membrane_updates']:.5g}"],
        ["Footprint (bytes)", f"{nb['Footprint']:.0f}", ""],
        ["ConnectionSparsity", f"{nb['ConnectionSparsity']:.4f}", ""],
    ]  # fmt: skip
    return [
        f"## NeuroBench ({metrics['snn']['label']})",
        "",
        *_table(["NeuroBench metric", "NeuroBench", "multispike"], rows),
        "Multi-level events carry k·q, so NeuroBench files their operations as MACs; it counts"
        " the analog first layer's non-zero inputs at every step, multispike its dense fan-out"
        " once; its MembraneUpdates reads snnTorch neurons only.",
        "",
    ]


def nested_metrics(metrics: dict) -> dict:
    """``{"ann.top1": x, "snn": {...}}`` → ``{"ann": {"top1": x}, "snn": {...}}``.

    The layout of every JSON file multispike writes (``report.json``, ``metrics.json``), so a
    key such as ``snn.top1_at_t`` is a path; integer keys become strings as in JSON.
    """
    nested: dict = {}
    for key, value in metrics.items():
        group, dot, name = key.partition(".")
        if dot:
            nested.setdefault(group, {})[name] = value
        else:
            nested[key] = {**value, **nested.get(key, {})} if isinstance(value, dict) else value
    return json.loads(json.dumps(nested))


def write_report(metrics: dict, directory: str | Path) -> Path:
    """Write ``metrics.json`` (nested, see :func:`nested_metrics`), ``report.md`` and PNGs."""

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    metrics = dict(metrics, plots=[p.name for p in write_plots(metrics, directory)])
    text = json.dumps(nested_metrics(metrics), indent=2)
    (directory / "metrics.json").write_text(text + "\n")
    (directory / "report.md").write_text(render_markdown(metrics))
    return directory
