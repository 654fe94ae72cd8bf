"""``multispike demo``: the embedded digits recipe, ``multispike run --recipe digits``.

No download: a CIFAR ResNet-20 is trained on scikit-learn's bundled digits, converted to a
multi-level SNN that answers in one step, distilled, evaluated and exported (under a minute
on 2 CPU cores) into ``runs/digits`` (``--output DIR``). Takes ``run``'s options.
"""

from __future__ import annotations

from .run import main as run_main


def main(argv: list[str]) -> int:
    return run_main(argv, prog="multispike demo", recipe="digits")
