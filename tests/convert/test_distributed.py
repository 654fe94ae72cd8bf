"""Whole batches per rank: the split is exact, and calibration over 3 processes (gloo) gives
the λ of one process, bit for bit."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from multispike.convert import shard_batches
from multispike.convert.distributed import RankBatches


@pytest.mark.parametrize("size,batch,world", [(70, 16, 2), (70, 16, 3), (64, 16, 4), (5, 2, 3)])
def test_ranks_share_the_sequential_batches_without_repeats(size, batch, world):
    one = [list(range(i, min(i + batch, size))) for i in range(0, size, batch)]
    parts = [list(RankBatches(size, batch, rank, world)) for rank in range(world)]
    for rank, part in enumerate(parts):
        assert part == one[rank::world]
        assert len(RankBatches(size, batch, rank, world)) == len(part)
        sampler = RankBatches(size, batch, rank, world)
        assert [one.index(b) for b in part] == [sampler.global_index(j) for j in range(len(part))]
    flat = sorted(i for part in parts for b in part for i in b)
    assert flat == list(range(size))  # every sample once: no padding, nothing dropped


def test_shard_batches_reads_a_loader_by_rank_and_refuses_what_it_cannot_split():
    data = TensorDataset(torch.arange(10.0))
    loader = DataLoader(data, batch_size=4)
    assert shard_batches(loader, 0, 1) is loader
    got = [b[0].tolist() for b in shard_batches(loader, 1, 2)]
    assert got == [[4.0, 5.0, 6.0, 7.0]]
    with pytest.raises(ValueError, match="sequential DataLoader"):
        shard_batches(DataLoader(data, batch_size=4, shuffle=True), 0, 2)
    with pytest.raises(ValueError, match="fewer than the 4 processes"):
        shard_batches(loader, 0, 4)


SCRIPT = textwrap.dedent(
    """
    import sys
    import torch
    import torch.distributed as dist
    import torch.multiprocessing as mp
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset
    from multispike.convert import build_qann, calibrate_thresholds, shard_batches

    def model():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(2, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3),
                             nn.ReLU(), nn.Flatten(), nn.Linear(8 * 22 * 22, 4), nn.ReLU())

    def loader():
        x = torch.rand(70, 2, 24, 24, generator=torch.Generator().manual_seed(1))
        x = x * torch.linspace(0.5, 2, 70).reshape(70, 1, 1, 1)
        # two rows per item, as event frames are: the replayed draws must count rows
        return DataLoader(TensorDataset(x), batch_size=16,
                          collate_fn=lambda b: torch.cat([torch.stack([i[0] for i in b])] * 2))

    def thresholds(data, per_channel):
        qann = build_qann(model(), 4, per_channel=per_channel, input_shape=(2, 24, 24))
        return calibrate_thresholds(qann, data, method="percentile", percentile=97,
                                    progress=False)

    def rank(r, world, path):
        dist.init_process_group("gloo", init_method=f"file://{path}/store", rank=r,
                                world_size=world)
        result = {pc: thresholds(shard_batches(loader()), pc) for pc in (False, True)}
        torch.save(result, f"{path}/rank{r}.pt")
        dist.destroy_process_group()

    if __name__ == "__main__":
        path, world = sys.argv[1], int(sys.argv[2])
        torch.save({pc: thresholds(loader(), pc) for pc in (False, True)}, f"{path}/one.pt")
        mp.spawn(rank, args=(world, path), nprocs=world)
    """
)


def test_three_processes_calibrate_the_thresholds_of_one(tmp_path):
    script = tmp_path / "calibrate_ddp.py"
    script.write_text(SCRIPT)
    done = subprocess.run([sys.executable, str(script), str(tmp_path), "3"], capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    one = torch.load(tmp_path / "one.pt")
    for r in range(3):
        ranked = torch.load(tmp_path / f"rank{r}.pt")
        for per_channel in (False, True):
            assert one[per_channel].keys() == ranked[per_channel].keys()
            for name, lam in one[per_channel].items():
                assert torch.equal(lam, ranked[per_channel][name]), (r, per_channel, name)
