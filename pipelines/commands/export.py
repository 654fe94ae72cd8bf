"""``multispike export``: a converted model folder to NIR (the spiking graph), sinabs (the
same SNN in SynSense's simulator) or ONNX (T = 1).

multispike export --model_dir runs/resnet20-L4 --format onnx --output resnet20.onnx
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

__all__ = ["config", "export", "main"]


def export(
    model_dir: Path,
    format: Literal["nir", "onnx", "sinabs"],  # noqa: A002  (the flag's name)
    output: Path,
    nir_output: Literal["values", "spikes"] = "values",
    opset: int = 17,
) -> Path:
    """Export a converted model folder to NIR, sinabs or ONNX.

    Args:
        model_dir: a model folder of ``multispike convert`` or ``distill`` (config.json +
            model.safetensors).
        format: ``nir`` (the spiking graph; SNN folders only), ``sinabs`` (the SNN with
            sinabs IAF neurons, bit-identical, ``torch.save``; SNN folders only) or ``onnx``
            (the network at ``T = 1``).
        output: the file to write.
        nir_output: NIR only: end the graph with the output values or the last layer's
            spikes.
        opset: ONNX only: the opset version.
    """
    import json

    from ...convert import SpikingNetwork
    from ...convert.distributed import rank_and_world
    from ..export import ExportError, export_nir, export_onnx
    from ..folder import load
    from ..outputs import check_output, writing

    if rank_and_world()[0] != 0:  # a distributed run's other ranks: rank 0 writes the file
        return Path(output)
    check_output(output, "file")
    if format == "sinabs":
        _require_sinabs()
    model = load(model_dir)
    if format != "onnx" and not isinstance(model, SpikingNetwork):
        raise ExportError(
            f"{model_dir} holds a quantized ANN, not a spiking network: {format} export needs "
            "an SNN (convert with to_snn and save it), or use --format onnx"
        )
    config = json.loads((Path(model_dir) / "config.json").read_text())  # load() checked it
    with writing(output):
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        if format == "onnx":
            export_onnx(model, output, opset=opset, preprocessing=config.get("preprocessing"))
        elif format == "sinabs":
            from ..export.sinabs import save_sinabs

            save_sinabs(model, output)
        else:
            graph = export_nir(model, output, output=nir_output)
    if format == "nir":
        _warn_payload(graph)
    print(f"wrote {output} ({format})")
    return Path(output)


def _require_sinabs() -> None:
    """Raise one line saying how to install sinabs when it cannot be imported."""
    from ..export import ExportError

    try:
        import sinabs.activation  # noqa: F401
        import sinabs.layers  # noqa: F401
    except ImportError as err:
        raise ExportError(
            f"--format sinabs needs sinabs, which cannot be imported ({err}): install it with "
            "'pip install --no-deps sinabs pbr' (sinabs pins an older nir; see the README)"
        ) from None


def _warn_payload(graph) -> None:
    """Name what a plain NIR reader loses of a multi-level network (to stderr)."""
    import sys

    most = max(
        (n.metadata.get("max_spikes", 1) for n in graph.nodes.values() if n.metadata), default=1
    )
    if most > 1:
        print(
            f"note: up to N = {most} spikes per neuron and step; NIR's IF emits one, so readers "
            "that follow it (snnTorch, Norse, Rockpool, ...) lose the payload wherever a step "
            "needs more. Each IF node's metadata holds max_spikes, v_init and reset='subtract': "
            "a multi-spike reader (sinabs IAF with MaxSpike(N), membrane set to v_init: "
            "multispike.pipelines.export.sinabs.sinabs_from_nir) runs it exactly.",
            file=sys.stderr,
        )


def config(argv: list[str]) -> str:
    """The options ``argv`` resolve to, as YAML (validated; nothing is run)."""
    from ..cli import function_config

    return function_config(export, argv, "multispike export")


def main(argv: list[str]) -> int:
    from ..cli import run_function

    return run_function(export, argv, "multispike export")
