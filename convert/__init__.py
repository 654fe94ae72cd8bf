"""ANN → multi-level quantized ANN → multi-level spiking network.

>>> qann = calibrate(model, loader, levels=4)          # thresholds from data
>>> snn = to_snn(qann, max_spikes=4, timesteps=1)        # bit-identical to qann at T=1
>>> outputs = snn(images)                                # (T, B, classes)
"""

from .calibrate import build_qann, calibrate, calibrate_thresholds, fold_qann, quantizers
from .distributed import shard_batches
from .errors import ConversionError
from .modules import model_device
from .neuron import MultiLevelIFNeuron, if_neuron
from .options import CalibrationOptions
from .quant import MultiLevelQuantizer, quantize
from .reconstruct import reconstruct
from .report import ConversionReport, conversion_report
from .residual import JOIN_MODES, residual_joins, rewire_residual
from .snn import SpikingNetwork, cumulative_mean, neurons, qann_of, to_snn
from .ttfs import TTFSNetwork, TTFSNeuron, to_ttfs

__all__ = [
    "CalibrationOptions",
    "ConversionError",
    "JOIN_MODES",
    "ConversionReport",
    "MultiLevelIFNeuron",
    "MultiLevelQuantizer",
    "SpikingNetwork",
    "TTFSNetwork",
    "TTFSNeuron",
    "build_qann",
    "calibrate",
    "calibrate_thresholds",
    "conversion_report",
    "cumulative_mean",
    "fold_qann",
    "if_neuron",
    "model_device",
    "neurons",
    "qann_of",
    "quantize",
    "quantizers",
    "reconstruct",
    "residual_joins",
    "rewire_residual",
    "shard_batches",
    "to_snn",
    "to_ttfs",
]
