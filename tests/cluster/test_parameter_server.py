"""The parameter server's plain logic: shard layout, sync averaging, async staleness, rendezvous."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cluster.errors import ClusterError
from cluster.parameter_server import (
    ParameterShard,
    Rendezvous,
    ShardLayout,
    StaleAttemptError,
)
from mtp_core.spec import PSMode
from tests.conftest import digits_task_dict
from trainer import ConfigError, parse_task, prepare


def _mlp() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))


def test_layout_assigns_every_tensor_once_and_balances() -> None:
    model = _mlp()
    layout = ShardLayout.for_module(model, 2)
    names = sorted(layout.names(0) + layout.names(1))
    assert names == sorted(n for n, _ in model.named_parameters())
    assert sum(layout.sizes) == sum(p.numel() for p in model.parameters())
    # largest tensor (0.weight, 30) alone on shard 0; the other three (5+15+3=23) on shard 1
    assert layout.names(0) == ["0.weight"] and layout.sizes == [30, 23]
    assert ShardLayout.for_module(model, 2).shards == layout.shards  # deterministic


def test_layout_gather_scatter_round_trip() -> None:
    model = _mlp()
    params = dict(model.named_parameters())
    layout = ShardLayout.for_module(model, 3)
    flats = [layout.gather(params, k) for k in range(3)]
    assert all(f.dtype == np.float32 and f.ndim == 1 for f in flats)
    other = _mlp()
    for p in other.parameters():
        p.data.zero_()
    for k in range(3):
        layout.scatter(flats[k], dict(other.named_parameters()), k)
    for (n, a), (_, b) in zip(model.named_parameters(), other.named_parameters(), strict=True):
        assert torch.equal(a, b), n


def test_layout_rejects_more_shards_than_tensors() -> None:
    with pytest.raises(ClusterError, match=r"ps.num_shards=5 but the model has only 4"):
        ShardLayout.for_module(_mlp(), 5)


def _sgd(params: list[torch.Tensor]) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=0.5)


def test_sync_shard_averages_in_rank_order_and_steps_once() -> None:
    shard = ParameterShard(0, PSMode.SYNC, world_size=2, max_staleness=0, make_optimizer=_sgd)
    shard.publish(0, np.ones(4, np.float32), 0, None)
    g0 = np.array([1, 2, 3, 4], np.float32)
    g1 = np.array([3, 2, 1, 0], np.float32)
    assert shard.submit(0, 1, 0, g1) is False
    assert shard.submit(0, 0, 0, g0) is True
    assert shard.apply_pending() == 1
    np.testing.assert_allclose(shard.params(), 1 - 0.5 * (g0 + g1) / 2)
    with pytest.raises(ClusterError, match="version 0 .* at version 1"):
        shard.submit(0, 0, 0, g0)


def test_sync_shard_refuses_duplicates_and_old_attempts() -> None:
    shard = ParameterShard(0, PSMode.SYNC, world_size=2, max_staleness=0, make_optimizer=_sgd)
    shard.publish(3, np.zeros(2, np.float32), 7, None)
    shard.submit(3, 0, 7, np.zeros(2, np.float32))
    with pytest.raises(ClusterError, match="rank 0 pushed twice"):
        shard.submit(3, 0, 7, np.zeros(2, np.float32))
    with pytest.raises(StaleAttemptError, match="attempt 2, current is 3"):
        shard.submit(2, 1, 7, np.zeros(2, np.float32))
    with pytest.raises(ClusterError, match=r"shape \(3,\), expected \(2,\)"):
        shard.submit(3, 1, 7, np.zeros(3, np.float32))


def test_async_shard_drops_pushes_staler_than_the_bound() -> None:
    shard = ParameterShard(0, PSMode.ASYNC, world_size=2, max_staleness=1, make_optimizer=_sgd)
    shard.publish(0, np.zeros(1, np.float32), 0, None)
    g = np.ones(1, np.float32)
    assert shard.apply_async(0, 0, g).applied  # version 0 -> 1
    out = shard.apply_async(0, 0, g)  # based on 0, shard at 1: staleness 1 is allowed
    assert out.applied and out.staleness == 1 and out.version == 2
    dropped = shard.apply_async(0, 0, g)  # staleness 2 > 1
    assert not dropped.applied and dropped.staleness == 2 and dropped.version == 2
    np.testing.assert_allclose(shard.params(), [-1.0])
    assert shard.dropped == 1 and shard.pushes == 3


def test_shard_state_round_trip_restores_optimizer_state() -> None:
    def adam(params: list[torch.Tensor]) -> torch.optim.Optimizer:
        return torch.optim.Adam(params, lr=0.1)

    a = ParameterShard(0, PSMode.SYNC, 1, 0, adam)
    a.publish(0, np.zeros(3, np.float32), 0, None)
    for _ in range(3):
        a.submit(0, 0, a.version, np.array([1, -1, 2], np.float32))
        a.apply_pending()
    state = a.state_dict()
    b = ParameterShard(0, PSMode.SYNC, 1, 0, adam)
    b.publish(1, state["params"].numpy(), state["version"], state["optimizer"])
    for s in (a, b):
        s.attempt = 1
        s.submit(1, 0, 3, np.array([0.5, 0.5, 0.5], np.float32))
        s.apply_pending()
    assert b.version == a.version == 4
    assert np.array_equal(a.params(), b.params())  # bit-identical continuation


def test_unpublished_shard_says_so() -> None:
    shard = ParameterShard(2, PSMode.SYNC, 1, 0, _sgd)
    with pytest.raises(ClusterError, match="shard 2 holds no parameters yet"):
        shard.params()


def test_rendezvous_gathers_in_rank_order_and_forgets_after_all_read() -> None:
    r = Rendezvous(3)
    assert not r.put("k", 2, "c")
    assert not r.put("k", 0, "a")
    assert r.put("k", 1, "b")
    assert [r.result("k") for _ in range(3)] == [["a", "b", "c"]] * 3
    assert not r.pending("k")
    r.put("j", 0, 1)
    with pytest.raises(ClusterError, match="rank 0 arrived twice"):
        r.put("j", 0, 1)


def test_ps_spec_errors_name_the_field() -> None:
    base = digits_task_dict()
    with pytest.raises(ConfigError, match=r"ps.mode: got \"eventually\""):
        parse_task({**base, "strategy": "parameter_server", "ps": {"mode": "eventually"}})
    with pytest.raises(ConfigError, match=r"ps.num_shards: got 0"):
        parse_task({**base, "strategy": "parameter_server", "ps": {"num_shards": 0}})
    with pytest.raises(ConfigError, match=r"ps.max_staleness: got -1"):
        parse_task({**base, "strategy": "parameter_server", "ps": {"max_staleness": -1}})
    with pytest.raises(ConfigError, match=r"a ps section is set but strategy=ddp"):
        parse_task({**base, "ps": {"mode": "async"}})
    with pytest.raises(ConfigError, match=r"strategy: got \"allreduce\""):
        parse_task({**base, "strategy": "allreduce"})
    # the model has 4 parameter tensors (two Linear layers): 9 shards cannot be filled
    too_many = parse_task({**base, "strategy": "parameter_server", "ps": {"num_shards": 9}})
    with pytest.raises(ConfigError, match=r"ps.num_shards=9 but the model has only 4"):
        prepare(too_many)
