"""Model zoo: CIFAR ResNets, VGGs, Sparse/SEW ResNets and the NIR N-MNIST CNN in timm's registry
(prefix ``ms_``), and checkpoint loading.

Importing ``multispike.zoo`` registers every model, so ``timm.create_model("ms_resnet20")``
works afterwards; ``timm.list_models("ms_*")`` lists them.
"""

from . import cifar_resnet, nir_cnn, sparse_resnet, vgg
from .checkpoints import (
    CheckpointError,
    adapt_state_dict,
    check_state_dict,
    load_checkpoint,
    pretrained_path,
)
from .cifar_resnet import BasicBlock, CifarResNet, PadShortcut
from .paths import shared_data_dir
from .vgg import VGGBN

__all__ = [
    "BasicBlock",
    "CheckpointError",
    "CifarResNet",
    "PadShortcut",
    "adapt_state_dict",
    "check_state_dict",
    "cifar_resnet",
    "load_checkpoint",
    "nir_cnn",
    "sparse_resnet",
    "pretrained_path",
    "shared_data_dir",
    "vgg",
    "VGGBN",
]
