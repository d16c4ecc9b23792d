"""The training loop on a CUDA device (skipped where there is none).

Covers what the CPU suite cannot: tensors on the device, deterministic CUDA kernels
(CUBLAS_WORKSPACE_CONFIG), CUDA RNG state in checkpoints, and NCCL collectives through the same
``TorchCollective`` and DDP wrapping that the Ray Train workers use.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch

from tests.conftest import digits_task_dict
from trainer import parse_task, prepare, train_local
from trainer._collective import TorchCollective
from trainer.loop import TrainLoop

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

GPU_TASK = {**digits_task_dict(epochs=4, batch_size=32),
            "resources": {"num_workers": 1, "use_gpu": True, "gpus_per_worker": 1}}


def test_gpu_training_is_accurate_and_bit_reproducible(tmp_path: Path) -> None:
    task = parse_task(GPU_TASK)
    a = train_local(task, storage_path=tmp_path, run_name="a")
    b = train_local(task, storage_path=tmp_path, run_name="b")
    assert a["history"][-1]["val_accuracy"] >= 0.9
    assert a["weights_hash"] == b["weights_hash"]


def test_gpu_resume_matches_uninterrupted(tmp_path: Path) -> None:
    task = parse_task(GPU_TASK)
    ref = train_local(task, storage_path=tmp_path, run_name="ref")
    p = prepare(task)

    def loop() -> TrainLoop:
        from trainer._collective import SingleProcess

        return TrainLoop(task, p.dataset.features, p.dataset.targets, p.meta, p.seed,
                         tmp_path / "crash", p.fingerprint, SingleProcess(),
                         device=torch.device("cuda"))

    first = loop()
    first.run_epoch()
    first.run_epoch()
    del first
    resumed = loop()
    assert resumed.resumed_from == 2
    assert resumed.run()["weights_hash"] == ref["weights_hash"]


def test_nccl_collectives_and_ddp_single_rank(tmp_path: Path) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.cuda.set_device(0)
    dist.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{port}", rank=0,
                            world_size=1)
    try:
        task = parse_task(GPU_TASK)
        p = prepare(task)
        device = torch.device("cuda", 0)
        comm = TorchCollective(device)
        assert comm.all_reduce_sum(torch.tensor([1.0, 2.0])).tolist() == [1.0, 2.0]
        assert comm.broadcast_int(7) == 7
        loop = TrainLoop(task, p.dataset.features, p.dataset.targets, p.meta, p.seed,
                         tmp_path / "ddp", p.fingerprint, comm,
                         prepare_model=lambda m: DistributedDataParallel(m, device_ids=[0]),
                         device=device)
        out = loop.run()
        ref = train_local(task, storage_path=tmp_path, run_name="ref")
        assert out["history"][-1]["val_accuracy"] >= 0.9
        # a one-rank DDP all-reduce averages over one rank: same weights as no DDP at all
        assert out["weights_hash"] == ref["weights_hash"]
    finally:
        dist.destroy_process_group()
