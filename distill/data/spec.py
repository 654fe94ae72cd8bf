"""``from_spec``: the CLI ``--data`` spec (``NAME`` or ``NAME:ARG``) → a configured DataModule."""

from __future__ import annotations

import importlib
import inspect

import lightning as L

from .errors import DataSpecError

__all__ = ["SPECS", "from_spec"]

# name -> (argument, meaning); the argument is "" when the spec takes none.
SPECS: dict[str, tuple[str, str]] = {
    "random": ("[CxHxW]", "random tensors of that shape (default 3x32x32), shape-only calibration"),
    "digits": ("", "scikit-learn's bundled 8x8 digits, no download"),
    "cifar10": ("[PATH]", "CIFAR-10: a .npz (default: the shared one) or a torchvision root"),
    "cifar100": ("[DIR]", "CIFAR-100: a torchvision root or a .npz"),
    "imagefolder": ("DIR", "an ImageFolder tree, or DIR/train + DIR/val (ImageNet style)"),
    "nmnist": ("[DIR]", "N-MNIST events: sample files + id lists, or a tonic root"),
    "cifar10dvs": ("DIR", "CIFAR10-DVS events (tonic root)"),
    "dvsgesture": ("DIR", "DVS128 Gesture events (tonic root)"),
}


def _valid_specs() -> str:
    return ", ".join(f"{name}:{arg}" if arg else name for name, (arg, _) in SPECS.items())


def _parse_shape(text: str, spec: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(d) for d in text.lower().split("x"))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise DataSpecError(f"--data {spec!r}: the shape must read CxHxW, e.g. random:3x32x32")
    return shape


_CLASSES: dict[str, str] = {
    "random": "synthetic.RandomDataModule",
    "digits": "digits.DigitsDataModule",
    "cifar10": "cifar.CIFAR10DataModule",
    "cifar100": "cifar.CIFAR100DataModule",
    "imagefolder": "imagefolder.ImageFolderDataModule",
    "nmnist": "nmnist.NMNISTDataModule",
    "cifar10dvs": "cifar10dvs.CIFAR10DVSDataModule",
    "dvsgesture": "dvsgesture.DVSGestureDataModule",
}


def _factory(name: str) -> type[L.LightningDataModule]:
    """The DataModule class of a spec name, imported on demand (event data needs tonic)."""
    module, cls = _CLASSES[name].split(".")
    return getattr(importlib.import_module(f"{__package__}.{module}"), cls)


def from_spec(spec: str, **overrides) -> L.LightningDataModule:
    """Build the DataModule a ``--data`` spec names.

    Specs: ``random[:CxHxW]``, ``digits``, ``cifar10[:PATH]``, ``cifar100[:DIR]``,
    ``imagefolder:DIR``, ``nmnist[:DIR]``, ``cifar10dvs:DIR``, ``dvsgesture:DIR``. The part after
    the first ``:`` is the path (or shape); ``overrides`` are passed to the DataModule's
    constructor (``batch_size=…``, ``augment=False``, …); those set to ``None`` are dropped so
    unset CLI flags keep the DataModule's defaults.

    Raises:
        DataSpecError: unknown name, a missing or unexpected argument, or an option the
            DataModule does not take — the message lists what is valid.
    """
    name, sep, arg = spec.strip().partition(":")
    name = name.lower()
    if name not in SPECS:
        raise DataSpecError(f"unknown --data spec {spec!r}; valid specs: {_valid_specs()}")
    wanted = SPECS[name][0]
    if sep and not arg:
        raise DataSpecError(
            f"--data {spec!r}: nothing after ':'; expected {name}:{wanted.strip('[]')}"
        )
    if arg and not wanted:
        raise DataSpecError(f"--data {spec!r}: {name} takes no argument; write just '{name}'")
    if not arg and not wanted.startswith("[") and wanted:
        raise DataSpecError(f"--data {spec!r}: {name} needs a folder, e.g. {name}:{wanted}")
    kwargs = {key: value for key, value in overrides.items() if value is not None}
    if arg:
        kwargs["input_shape" if name == "random" else "path"] = (
            _parse_shape(arg, spec) if name == "random" else arg
        )
    cls = _factory(name)
    accepted = _accepted_options(cls)
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise DataSpecError(
            f"--data {spec!r}: {cls.__name__} takes no option(s) {unknown}; "
            f"it takes {sorted(accepted)}"
        )
    return cls(**kwargs)


def _accepted_options(cls: type) -> set[str]:
    """Keyword names a DataModule accepts, following ``**kwargs`` up its base classes."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        params = inspect.signature(klass.__init__).parameters.values()
        names |= {p.name for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    names.discard("self")
    return names
