"""``multispike demo [--output DIR]``: the embedded digits recipe (``run --recipe digits``).

No download: a CIFAR ResNet-20 is trained on scikit-learn's bundled digits, converted to a
multi-level SNN that answers in one step, distilled, evaluated and exported (a few minutes
on 2 CPU cores). The run directory (default ``runs/digits``) holds ``metrics.json``.
"""

from __future__ import annotations

from .run import execute, parser


def main(argv: list[str]) -> int:
    args = parser("multispike demo", recipe=False).parse_args(argv)
    args.recipe = "digits"
    return execute(args, "multispike demo")
