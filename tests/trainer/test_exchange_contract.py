"""Contract suite: every :class:`~trainer.exchange.GradientExchange` keeps the same promises.

The implementations run as in production, without Ray: :class:`DDPExchange` over the optimizer
``build_optimizer`` makes (world size 1: DDP's all-reduce over one rank is the identity), and
:class:`ParameterServerExchange` over the real ``cluster.ps_actors.ShardActor`` code, hosted on an
in-process event loop (:mod:`tests.support.aio_host`), with the fused optimizer the driver gives
the shards.

Equality is bitwise (``torch.equal``) unless a test says otherwise. Across the two exchanges
that holds for plain SGD: the fused update the shards run and torch's default update round
alike. With momentum or Adam they differ in the last bits (about 1e-7), so a test that compares
the two exchanges uses plain SGD, and the optimizer-state tests compare each exchange with
itself.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from cluster.parameter_server import PushOutcome, ShardLayout
from cluster.ps_actors import ShardActor
from mtp_core.spec import PSMode, TrainingTask
from tests.conftest import digits_task_dict
from tests.support.aio_host import EventLoopHost, event_loop_host
from trainer import parse_task, prepare
from trainer._collective import SingleProcess
from trainer.errors import CheckpointError
from trainer.exchange import (
    DDPExchange,
    GradientExchange,
    ParameterServerExchange,
    ShardStart,
)
from trainer.loop import TrainLoop, build_optimizer

pytestmark = pytest.mark.timeout(300)

STEPS = 4


class LocalShards:
    """:class:`~trainer.exchange.ShardServers` over in-process ``ShardActor`` objects: the
    actor code itself, its coroutines run on one event loop as Ray runs an asyncio actor."""

    def __init__(self, host: EventLoopHost, actors: list[ShardActor]) -> None:
        self.host = host
        self.actors = actors

    @classmethod
    def start(cls, host: EventLoopHost, task: TrainingTask, num_shards: int, mode: PSMode,
              world_size: int = 1, max_staleness: int = 0) -> LocalShards:
        make_optimizer = functools.partial(build_optimizer, task, fused=True)  # as the driver
        return cls(host, [ShardActor(k, mode, world_size, max_staleness, make_optimizer)
                          for k in range(num_shards)])

    def _all(self, calls: Sequence[Any]) -> list[Any]:
        futures = [self.host.submit(c) for c in calls]  # every shard at once, as over Ray
        return [f.result(timeout=self.host.timeout_s) for f in futures]

    def push(self, attempt: int, rank: int, versions: Sequence[int],
             grads: Sequence[np.ndarray]) -> list[tuple[PushOutcome, np.ndarray]]:
        replies = self._all([a.push(attempt, rank, versions[k], grads[k])
                             for k, a in enumerate(self.actors)])
        return [(PushOutcome(v, applied, staleness), params)
                for v, applied, staleness, params in replies]

    def pull(self, attempt: int) -> list[tuple[int, np.ndarray]]:
        return self._all([a.pull(attempt) for a in self.actors])

    def state_dicts(self) -> list[dict[str, Any]]:
        return self._all([a.state_dict() for a in self.actors])

    def publish(self, attempt: int, starts: Sequence[ShardStart]) -> None:
        self._all([a.publish(attempt, s.params, s.version, s.optimizer_state)
                   for a, s in zip(self.actors, starts, strict=True)])


def _ps_exchange(module: nn.Module, servers: LocalShards, num_shards: int, mode: PSMode,
                 attempt: int = 0, rank: int = 0,
                 barrier: Callable[[], None] = lambda: None) -> ParameterServerExchange:
    return ParameterServerExchange(module, ShardLayout.for_module(module, num_shards), servers,
                                   attempt, rank, mode, barrier=barrier)


# -- the implementations under contract ----------------------------------------------------------

MakeExchange = Callable[[nn.Module, TrainingTask, EventLoopHost], GradientExchange]


def _ddp(module: nn.Module, task: TrainingTask, host: EventLoopHost) -> GradientExchange:
    return DDPExchange(build_optimizer(task, module.parameters()))


def _ps(num_shards: int, mode: PSMode) -> MakeExchange:
    def make(module: nn.Module, task: TrainingTask, host: EventLoopHost) -> GradientExchange:
        # fresh shards, as after a restart: a resumed exchange must bring its own state
        servers = LocalShards.start(host, task, num_shards, mode)
        return _ps_exchange(module, servers, num_shards, mode)

    return make


IMPLEMENTATIONS: dict[str, MakeExchange] = {
    "ddp": _ddp,
    "ps-sync-1-shard": _ps(1, PSMode.SYNC),
    "ps-sync-2-shards": _ps(2, PSMode.SYNC),
    "ps-async-3-shards": _ps(3, PSMode.ASYNC),
}


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def make_exchange(request: pytest.FixtureRequest) -> MakeExchange:
    return IMPLEMENTATIONS[request.param]


@pytest.fixture
def host() -> Iterator[EventLoopHost]:
    with event_loop_host(timeout_s=60.0) as h:
        yield h


# -- a small problem ------------------------------------------------------------------------------


def _task(optimizer: str = "sgd", momentum: float = 0.0, lr: float = 0.1) -> TrainingTask:
    d = digits_task_dict(optimizer=optimizer, learning_rate=lr)
    d["hyperparameters"] = {"momentum": momentum} if optimizer == "sgd" else {}
    return parse_task(d)


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))


def _batches(n: int = STEPS, size: int = 16) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1234)
    return [(torch.randn(size, 6, generator=g), torch.randint(0, 3, (size,), generator=g))
            for _ in range(n)]


def _train(module: nn.Module, exchange: GradientExchange,
           batches: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    loss_fn = nn.CrossEntropyLoss()
    for x, y in batches:
        exchange.zero_grad()
        loss_fn(module(x), y).backward()
        exchange.step()


def _params(module: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in module.named_parameters()}


def _assert_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for n in a:
        assert torch.equal(a[n], b[n]), f"{n}: max |diff| {(a[n] - b[n]).abs().max().item()}"


def _sgd_by_hand(lr: float, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> nn.Module:
    """The reference: p <- p - lr * grad, written out."""
    module = _model()
    loss_fn = nn.CrossEntropyLoss()
    for x, y in batches:
        module.zero_grad(set_to_none=True)
        loss_fn(module(x), y).backward()
        with torch.no_grad():
            for p in module.parameters():
                assert p.grad is not None
                p.add_(p.grad, alpha=-lr)
    return module


def _checkpoint_round_trip(state: dict[str, Any]) -> dict[str, Any]:
    """What a checkpoint does to the state: torch.save, then a weights-only load."""
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    loaded: dict[str, Any] = torch.load(buf, map_location="cpu", weights_only=True)
    return loaded


# -- the contract ---------------------------------------------------------------------------------


def test_steps_apply_sgd_exactly(make_exchange: MakeExchange, host: EventLoopHost) -> None:
    """After N steps every exchange holds plain SGD's parameters, bit for bit; at world size 1
    ``synchronize`` changes nothing."""
    task, batches = _task(), _batches()
    module = _model()
    initial = _params(module)
    exchange = make_exchange(module, task, host)
    exchange.start()
    _assert_equal(_params(module), initial)  # start keeps the module's own parameters
    _train(module, exchange, batches)
    exchange.synchronize()
    after = _params(module)
    assert not torch.equal(after["0.weight"], initial["0.weight"])
    _assert_equal(after, _params(_sgd_by_hand(task.training.learning_rate, batches)))


@pytest.mark.parametrize("optimizer", ["sgd-momentum", "adam"])
def test_state_dict_round_trip_resumes_identically(make_exchange: MakeExchange,
                                                   host: EventLoopHost, optimizer: str) -> None:
    """A checkpoint (module + exchange state, through torch.save and a weights-only load) taken
    after k steps continues exactly as the uninterrupted exchange does."""
    task = _task("sgd", momentum=0.9) if optimizer == "sgd-momentum" else _task("adam", lr=0.01)
    batches = _batches(2 * STEPS)
    first, rest = batches[:STEPS], batches[STEPS:]

    module = _model()
    exchange = make_exchange(module, task, host)
    exchange.start()
    _train(module, exchange, first)
    saved_model = _checkpoint_round_trip(module.state_dict())
    saved_exchange = _checkpoint_round_trip(exchange.state_dict())
    _train(module, exchange, rest)
    uninterrupted = _params(module)

    resumed_module = _model(seed=99)  # other initial weights: everything comes from the save
    resumed_module.load_state_dict(saved_model)
    resumed = make_exchange(resumed_module, task, host)
    resumed.load_state_dict(saved_exchange)
    resumed.start()
    _train(resumed_module, resumed, rest)
    _assert_equal(_params(resumed_module), uninterrupted)

    # the optimizer state matters: the same parameters with a fresh state end elsewhere
    fresh_module = _model(seed=99)
    fresh_module.load_state_dict(saved_model)
    fresh = make_exchange(fresh_module, task, host)
    fresh.start()
    _train(fresh_module, fresh, rest)
    assert not torch.equal(_params(fresh_module)["0.weight"], uninterrupted["0.weight"])


def test_zero_grad_clears_the_gradients(make_exchange: MakeExchange, host: EventLoopHost) -> None:
    """``zero_grad`` leaves no gradient behind: a step right after it changes nothing."""
    module = _model()
    exchange = make_exchange(module, _task(), host)
    exchange.start()
    _train(module, exchange, _batches(1))
    x, y = _batches(1)[0]
    nn.CrossEntropyLoss()(module(x), y).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())
    before = _params(module)
    exchange.zero_grad()
    assert all(p.grad is None for p in module.parameters())
    exchange.step()
    _assert_equal(_params(module), before)


# -- what is particular to each implementation ----------------------------------------------------


def test_ddp_state_is_the_torch_optimizer_state() -> None:
    """Checkpoints keep their format: ``"optimizer"`` is the optimizer's own state dict."""
    task, module = _task("sgd", momentum=0.9), _model()
    optimizer = build_optimizer(task, module.parameters())
    exchange = DDPExchange(optimizer)
    _train(module, exchange, _batches(2))
    state = exchange.state_dict()
    assert state.keys() == {"state", "param_groups"}
    assert state["param_groups"][0]["momentum"] == 0.9
    reference = optimizer.state_dict()
    for i, s in state["state"].items():
        assert torch.equal(s["momentum_buffer"], reference["state"][i]["momentum_buffer"])


def test_ps_state_names_the_shards_and_rejects_other_layouts(host: EventLoopHost) -> None:
    task, module = _task(), _model()
    exchange = _ps_exchange(module, LocalShards.start(host, task, 2, PSMode.SYNC), 2,
                            PSMode.SYNC)
    exchange.start()
    _train(module, exchange, _batches(2))
    state = exchange.state_dict()
    assert state["strategy"] == "parameter_server" and state["num_shards"] == 2
    assert sorted(sum(state["shard_names"], [])) == sorted(_params(module))
    assert [s["version"] for s in state["shards"]] == [2, 2]

    other = _ps_exchange(_model(), LocalShards.start(host, task, 3, PSMode.SYNC), 3,
                         PSMode.SYNC)
    with pytest.raises(CheckpointError, match=r"shard layout \(2 shards\).*ps.num_shards=3"):
        other.load_state_dict(state)
    ddp_state = DDPExchange(build_optimizer(task, module.parameters())).state_dict()
    with pytest.raises(CheckpointError, match="holds a DDP optimizer state"):
        other.load_state_dict(ddp_state)


def test_ps_sync_two_ranks_average_like_one_rank_on_the_whole_batch(
        host: EventLoopHost) -> None:
    """Two sync ranks on half batches each end with the same parameters as each other (bitwise)
    and as one DDP rank on the whole batches (within float tolerance: the mean of two half-batch
    means rounds differently from the whole batch's mean)."""
    task, batches, num_shards = _task(), _batches(size=32), 2
    servers = LocalShards.start(host, task, num_shards, PSMode.SYNC, world_size=2)
    modules = [_model(), _model()]
    exchanges = [_ps_exchange(m, servers, num_shards, PSMode.SYNC, rank=r)
                 for r, m in enumerate(modules)]
    exchanges[0].start()  # rank 0 publishes; here rank 1 starts after it, not at a barrier
    exchanges[1].start()

    def rank(r: int) -> None:
        _train(modules[r], exchanges[r], [(x[r::2], y[r::2]) for x, y in batches])

    with ThreadPoolExecutor(max_workers=2) as pool:
        for f in [pool.submit(rank, r) for r in range(2)]:
            f.result(timeout=120)
    _assert_equal(_params(modules[0]), _params(modules[1]))
    assert [exchanges[0].stats(), exchanges[1].stats()] == [
        {"pushes": STEPS * num_shards, "dropped": 0, "max_staleness": 0}] * 2

    whole = _model()
    _train(whole, _ddp(whole, task, host), batches)
    for n, p in _params(whole).items():
        torch.testing.assert_close(_params(modules[0])[n], p, rtol=1e-5, atol=1e-6)


def test_ps_async_synchronize_takes_the_newest_parameters(host: EventLoopHost) -> None:
    """In async mode a rank that stepped before another holds older parameters until
    ``synchronize``."""
    task = _task()
    servers = LocalShards.start(host, task, 2, PSMode.ASYNC, world_size=2, max_staleness=4)
    modules = [_model(), _model()]
    exchanges = [_ps_exchange(m, servers, 2, PSMode.ASYNC, rank=r)
                 for r, m in enumerate(modules)]
    for e in exchanges:
        e.start()
    batch = _batches(1)
    _train(modules[0], exchanges[0], batch)  # shard versions 0 -> 1
    _train(modules[1], exchanges[1], batch)  # computed on version 0, applied: 1 -> 2
    assert exchanges[1].stats() == {"pushes": 2, "dropped": 0, "max_staleness": 1}
    assert not torch.equal(_params(modules[0])["0.weight"], _params(modules[1])["0.weight"])
    exchanges[1].synchronize()
    newest = _params(modules[1])
    exchanges[0].synchronize()
    _assert_equal(_params(modules[0]), newest)
    assert exchanges[0].versions == [2, 2]


# -- through the training loop --------------------------------------------------------------------


def _loop_task(strategy: str, momentum: float, epochs: int = 3) -> TrainingTask:
    d = digits_task_dict(epochs=epochs, optimizer="sgd", learning_rate=0.05, batch_size=32,
                         checkpoint={"every_n_epochs": 1})
    d["hyperparameters"] = {"momentum": momentum}
    d["model"] = {"type": "mlp", "hidden_sizes": [16], "dropout": 0.1}
    d["dataset"] = {"source": "synthetic", "n_samples": 600, "n_features": 12, "n_classes": 3}
    if strategy == "parameter_server":
        d["strategy"] = strategy
        d["ps"] = {"num_shards": 2}
    return parse_task(d)


def _ps_loop(task: TrainingTask, run_dir: Path, host: EventLoopHost,
             attempt: int = 0) -> TrainLoop:
    p = prepare(task)
    servers = LocalShards.start(host, task, task.ps_spec.num_shards, task.ps_spec.mode)

    def make(module: nn.Module) -> GradientExchange:
        return _ps_exchange(module, servers, task.ps_spec.num_shards, task.ps_spec.mode,
                            attempt=attempt)

    return TrainLoop(task, p.dataset.features, p.dataset.targets, p.meta, p.seed, run_dir,
                     p.fingerprint, SingleProcess(), make_exchange=make)


def test_loop_trains_to_the_same_weights_through_either_exchange(
        tmp_path: Path, host: EventLoopHost) -> None:
    ddp_task = _loop_task("ddp", momentum=0.0)
    p = prepare(ddp_task)
    ddp = TrainLoop(ddp_task, p.dataset.features, p.dataset.targets, p.meta, p.seed,
                    tmp_path / "ddp", p.fingerprint, SingleProcess()).run()
    ps = _ps_loop(_loop_task("parameter_server", momentum=0.0), tmp_path / "ps", host).run()
    assert ps["weights_hash"] == ddp["weights_hash"]
    assert [h["train_loss"] for h in ps["history"]] == [h["train_loss"] for h in ddp["history"]]


def test_loop_resumes_a_ps_run_on_fresh_shards_to_identical_weights(
        tmp_path: Path, host: EventLoopHost) -> None:
    task = _loop_task("parameter_server", momentum=0.9)
    reference = _ps_loop(task, tmp_path / "ref", host).run()
    first = _ps_loop(task, tmp_path / "run", host)
    first.run_epoch()
    first.run_epoch()
    del first  # the attempt dies after epoch 2's checkpoint; its shards go with it
    resumed = _ps_loop(task, tmp_path / "run", host, attempt=1)
    assert resumed.resumed_from == 2
    assert resumed.run()["weights_hash"] == reference["weights_hash"]
