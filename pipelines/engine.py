"""Where ``convert`` and ``evaluate`` run: Lightning Fabric on one CPU, one GPU, or
``devices × num_nodes`` processes with DDP.

They take the ``--trainer.*`` options that ``distill`` hands its Trainer (``accelerator``,
``devices``, ``num_nodes``, ``strategy``), so one configuration places every stage. Fabric
launches the processes (for ``ddp`` each process reruns the command, as with the Trainer)
and sets up the process group; the stages then split their loaders into whole batches per
rank (:func:`multispike.convert.shard_batches`), gather calibration statistics and reduce
metrics, and rank 0 alone writes files.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Engine"]


@dataclass(frozen=True)
class Engine:
    """The Fabric a stage runs on (the names and meaning of Lightning's Trainer options).

    Attributes:
        accelerator: ``cpu``, ``gpu``, ``cuda``, ``mps`` or ``auto``.
        devices: devices per node: a count, ``"auto"``, or indices such as ``[0, 2]``.
        num_nodes: machines.
        strategy: ``auto`` (one device: none; several: ``ddp``) or ``ddp``; strategies that
            spawn processes (``ddp_spawn``) are not supported by the command-line stages.
    """

    accelerator: str = "auto"
    devices: int | str | list[int] = 1
    num_nodes: int = 1
    strategy: str = "auto"

    def launch(self):
        """Start the processes (if several) and return this process's ``Fabric``."""
        from lightning.fabric import Fabric
        from lightning.fabric.utilities.exceptions import MisconfigurationException

        if "spawn" in self.strategy:
            raise ValueError(
                f"--trainer.strategy {self.strategy}: the command-line stages rerun the command "
                "in each process; use ddp"
            )
        try:
            fabric = Fabric(
                accelerator=self.accelerator,
                devices=self.devices,
                num_nodes=self.num_nodes,
                strategy=self.strategy,
            )
        except (RuntimeError, MisconfigurationException) as err:  # no such device here
            raise ValueError(
                f"--trainer.accelerator {self.accelerator} --trainer.devices {self.devices}: "
                f"{err} (--trainer.accelerator auto takes what this machine has)"
            ) from None
        fabric.launch()
        return fabric
