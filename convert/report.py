"""What a conversion did, layer by layer: printable, and as a JSON-ready dict."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from torch import fx, nn

from .calibrate import quantizers
from .signals import max_pool_nodes
from .snn import SpikingNetwork, neurons

__all__ = ["ConversionReport", "LayerEntry", "conversion_report"]


@dataclass
class LayerEntry:
    """One converted activation site."""

    path: str
    source: str
    levels: int
    max_spikes: int | None
    threshold_min: float
    threshold_mean: float
    threshold_max: float
    channels: int | None


@dataclass
class ConversionReport:
    """Summary of a QANN (and its SNN): sites, thresholds, folds, pass-through ops."""

    model: str
    levels: int
    per_channel: bool
    max_spikes: int | None
    timesteps: int | None
    layers: list[LayerEntry] = field(default_factory=list)
    folded_batchnorm: list[list[str]] = field(default_factory=list)
    max_pool: list[str] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self, **kwargs) -> str:
        return json.dumps(self.to_dict(), indent=2, **kwargs)

    def __str__(self) -> str:
        head = (
            f"{self.model}: {len(self.layers)} activation sites -> "
            f"L={self.levels} levels ({'per channel' if self.per_channel else 'per layer'})"
        )
        if self.max_spikes is not None:
            head += f", N={self.max_spikes} spikes/step, T={self.timesteps}"
        width = max([len(e.path) for e in self.layers] + [4])
        rows = [head, f"{'site':<{width}}  {'λ min':>8} {'λ mean':>8} {'λ max':>8}  replaces"]
        for e in self.layers:
            rows.append(
                f"{e.path:<{width}}  {e.threshold_min:8.4f} {e.threshold_mean:8.4f} "
                f"{e.threshold_max:8.4f}  {e.source}"
            )
        rows.append(f"BatchNorm folded: {len(self.folded_batchnorm)}")
        if self.max_pool:
            rows.append(
                f"max-pooling (exact at T=1, per-step max for T>1): {', '.join(self.max_pool)}"
            )
        rows.append(f"unsupported ops: {len(self.unsupported) or 'none'}")
        return "\n".join(rows)


def conversion_report(model: fx.GraphModule | SpikingNetwork, name: str = "") -> ConversionReport:
    """Build the report of a QANN or of a :class:`SpikingNetwork`."""
    snn = model if isinstance(model, SpikingNetwork) else None
    graph: fx.GraphModule = snn.net if snn is not None else model
    meta = graph.meta["multispike"]
    sites: dict[str, nn.Module] = dict(neurons(graph)) if snn is not None else {}
    sites = sites or dict(quantizers(graph))
    entries = []
    for path, mod in sites.items():
        lam = mod.threshold.detach().float()
        entries.append(
            LayerEntry(
                path=path,
                source=mod.source,
                levels=meta["levels"],
                max_spikes=getattr(mod, "max_spikes", None),
                threshold_min=float(lam.min()),
                threshold_mean=float(lam.mean()),
                threshold_max=float(lam.max()),
                channels=lam.numel() if lam.dim() else None,
            )
        )
    return ConversionReport(
        model=name or meta.get("source_class", type(graph).__name__),
        levels=meta["levels"],
        per_channel=meta["per_channel"],
        max_spikes=meta.get("max_spikes") if snn is not None else None,
        timesteps=snn.timesteps if snn is not None else None,
        layers=entries,
        folded_batchnorm=meta["folded_batchnorm"],
        max_pool=[n.target if n.op == "call_module" else n.name for n in max_pool_nodes(graph)],
    )
