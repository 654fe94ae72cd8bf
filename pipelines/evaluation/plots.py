"""PNG plots of an evaluation (the dict of :func:`.compute.evaluate`)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .runs import spiking_runs  # noqa: E402

__all__ = ["PLOTS", "write_plots"]


def _steps(values: dict) -> tuple[list[int], list[float]]:
    steps = sorted(int(t) for t in values)
    return steps, [100 * values[t] if t in values else 100 * values[str(t)] for t in steps]


def accuracy_vs_t(metrics: dict, ax) -> None:
    for run in spiking_runs(metrics):
        ax.plot(*_steps(run["top1_at_t"]), marker="o", label=f"SNN {run['label']}")
    for key, style in (("ann.top1", "--"), ("qann.top1", ":")):
        if key in metrics:
            ax.axhline(100 * metrics[key], linestyle=style, color="gray", label=key.split(".")[0])
    ax.set(xlabel="time step t", ylabel="top-1 accuracy after t steps (%)",
           title="Accuracy against time steps")  # fmt: skip


def _bars(ax, layer_values: list[dict[str, float]], labels: list[str], ylabel: str) -> None:
    names = list(dict.fromkeys(name for values in layer_values for name in values))
    width = 0.8 / len(layer_values)
    for i, (values, label) in enumerate(zip(layer_values, labels, strict=True)):
        xs = [j + i * width for j in range(len(names))]
        ax.bar(xs, [values.get(n, 0.0) for n in names], width, label=label)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(names))], names, rotation=90, fontsize=7)
    ax.set_ylabel(ylabel)


def activity_per_layer(metrics: dict, ax) -> None:
    runs = spiking_runs(metrics)
    values = [
        {n: a["events_per_neuron_step"] for n, a in r["activity"]["neurons"].items()} for r in runs
    ]
    _bars(ax, values, [f"SNN {r['label']}" for r in runs], "events per neuron per step")
    ax.set_title("Activity per neuron layer")


def energy_per_layer(metrics: dict, ax) -> None:
    runs = spiking_runs(metrics)
    values = [{n: e["total"] / 1e6 for n, e in r["energy"]["layers"].items()} for r in runs]
    _bars(ax, values, [f"SNN {r['label']}" for r in runs], "energy per image (µJ, with memory)")
    ax.set_title("Energy per layer")


def accuracy_vs_noise(metrics: dict, ax) -> None:
    for name, by_level in metrics["robustness"].items():
        levels = sorted(float(v) for v in by_level)
        lookup = {float(k): v for k, v in by_level.items()}
        ax.plot(levels, [100 * lookup[v] for v in levels], marker="o", label=name)
    ax.set(xlabel="input noise (σ, or event probability)", ylabel="top-1 accuracy (%)",
           title="Robustness to input noise")  # fmt: skip


def accuracy_vs_energy(metrics: dict, ax) -> None:
    for run in metrics["sweep"]:
        marker = "s" if run["max_spikes"] == 1 else "o"
        ax.scatter(run["energy"]["total"] / 1e6, 100 * run["top1"], marker=marker)
        ax.annotate(run["label"], (run["energy"]["total"] / 1e6, 100 * run["top1"]), fontsize=7)
    if "ann.top1" in metrics:
        ann = metrics["ann_energy"]["total"] / 1e6
        ax.scatter(ann, 100 * metrics["ann.top1"], marker="*", s=120, label="ANN")
    ax.set_xscale("log")
    ax.set(xlabel="energy per image (µJ, with memory)", ylabel="top-1 accuracy (%)",
           title="Accuracy against energy (○ multi-level, □ binary)")  # fmt: skip


def latency_histogram(metrics: dict, ax) -> None:
    """One group of bars per step (a one-step SNN is one visible bar at step 1)."""
    runs = spiking_runs(metrics)
    width = 0.8 / len(runs)
    for i, run in enumerate(runs):
        pairs = sorted((int(t), c) for t, c in run["latency"]["histogram"].items())
        steps, counts = [t for t, _ in pairs], [c for _, c in pairs]
        total = max(sum(counts), 1)
        offsets = [t + (i - (len(runs) - 1) / 2) * width for t in steps]
        ax.bar(offsets, [100 * c / total for c in counts], width, label=f"SNN {run['label']}")
    ax.set(xlabel="decision latency (first step of the final prediction)",
           ylabel="images (%)", title="Latency distribution")  # fmt: skip


def _code_points(metrics: dict, ax, key: str, xlabel: str, title: str) -> None:
    for row in metrics["codes"]:
        x = row[key]
        ax.scatter(x, 100 * row["top1"], label=f"{row['code']} {row['label']}")
    ax.set_xscale("log")
    ax.set(xlabel=xlabel, ylabel="top-1 accuracy (%)", title=title)


def codes_accuracy_vs_events(metrics: dict, ax) -> None:
    _code_points(metrics, ax, "events", "events per image", "Spike codes: accuracy against events")


def codes_accuracy_vs_latency(metrics: dict, ax) -> None:
    _code_points(metrics, ax, "latency_steps", "latency (steps of the code's clock)",
                 "Spike codes: accuracy against latency")  # fmt: skip


def _code_curves(metrics: dict, ax, kind: str, xlabel: str) -> None:
    for row in metrics["codes"]:
        by = row["robustness"].get(kind)
        if by:
            levels = sorted(float(v) for v in by)
            lookup = {float(k): v for k, v in by.items()}
            ax.plot(levels, [100 * lookup[v] for v in levels], marker="o",
                    label=f"{row['code']} {row['label']}")  # fmt: skip
    ax.set(xlabel=xlabel, ylabel="top-1 accuracy (%)", title=f"Spike codes: {xlabel}")


def codes_accuracy_vs_noise(metrics: dict, ax) -> None:
    _code_curves(metrics, ax, "input", "input noise (σ, or event probability)")


def codes_accuracy_vs_deletion(metrics: dict, ax) -> None:
    _code_curves(metrics, ax, "deletion", "spike deletion probability")


PLOTS = {
    "accuracy_vs_t.png": accuracy_vs_t,
    "activity_per_layer.png": activity_per_layer,
    "energy_per_layer.png": energy_per_layer,
    "accuracy_vs_noise.png": accuracy_vs_noise,
    "accuracy_vs_energy.png": accuracy_vs_energy,
    "latency.png": latency_histogram,
    "codes_accuracy_vs_events.png": codes_accuracy_vs_events,
    "codes_accuracy_vs_latency.png": codes_accuracy_vs_latency,
    "codes_accuracy_vs_noise.png": codes_accuracy_vs_noise,
    "codes_accuracy_vs_deletion.png": codes_accuracy_vs_deletion,
}


def write_plots(metrics: dict, directory: str | Path) -> list[Path]:
    """Draw every plot whose data is in ``metrics`` into ``directory``; returns the files."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    needs = {"accuracy_vs_noise.png": "robustness"}
    needs.update({name: "codes" for name in PLOTS if name.startswith("codes_")})
    written = []
    for name, draw in PLOTS.items():
        if needs.get(name, "snn") not in metrics:
            continue
        fig, ax = plt.subplots(figsize=(7, 4.5), layout="constrained")
        try:
            draw(metrics, ax)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=8)
            ax.grid(alpha=0.3)
            fig.savefig(directory / name, dpi=110)
        finally:
            plt.close(fig)
        written.append(directory / name)
    return written
