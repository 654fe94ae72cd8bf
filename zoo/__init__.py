"""Model zoo: CIFAR ResNets, VGGs, Sparse/SEW ResNets and the NIR N-MNIST CNN in timm's registry
(prefix ``ms_``), checkpoint loading, and :func:`load_model`, the one way to build a source ANN.

Importing ``multispike.zoo`` registers every model, so ``timm.create_model("ms_resnet20")``
works afterwards; ``timm.list_models("ms_*")`` lists them.
"""

from . import airbench, cifar_resnet, nir_cnn, sparse_resnet, vgg
from .airbench import AirbenchNet
from .checkpoints import CheckpointError, adapt_state_dict, check_state_dict, load_checkpoint
from .cifar_resnet import BasicBlock, CifarResNet, PadShortcut
from .loader import load_model
from .paths import pretrained_path, shared_data_dir
from .vgg import VGGBN

__all__ = [
    "AirbenchNet",
    "BasicBlock",
    "CheckpointError",
    "CifarResNet",
    "PadShortcut",
    "VGGBN",
    "adapt_state_dict",
    "airbench",
    "check_state_dict",
    "cifar_resnet",
    "load_checkpoint",
    "load_model",
    "nir_cnn",
    "pretrained_path",
    "shared_data_dir",
    "sparse_resnet",
    "vgg",
]
