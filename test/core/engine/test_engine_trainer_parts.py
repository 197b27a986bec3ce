"""Schedule, resumable sampling, per-sample seeds, RNG state, EMA and optimizer groups."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest
import torch
from torch import nn

from dlrmamba_core.engine.ema import ModelEMA
from dlrmamba_core.engine.sampling import ResumableSampler, SeededDataset
from dlrmamba_core.engine.state import capture_rng, restore_rng
from dlrmamba_core.engine.trainer import TrainConfig, build_optimizer, lr_factor
from dlrmamba_core.errors import ConfigError


def test_lr_warmup_then_cosine_to_floor() -> None:
    f = [lr_factor(s, 100, 10, 0.1, 0.01) for s in range(101)]
    assert f[0] == pytest.approx(0.1)
    assert f[10] == pytest.approx(1.0)
    assert all(a < b for a, b in itertools.pairwise(f[:11]))  # rising warmup
    assert all(a >= b for a, b in itertools.pairwise(f[10:]))  # cosine never rises
    assert f[55] == pytest.approx(0.01 + 0.99 * 0.5)  # half way down the cosine
    assert f[100] == pytest.approx(0.01)


def test_sampler_is_a_function_of_seed_and_epoch_and_resumes() -> None:
    s = ResumableSampler(50, seed=3)
    s.set_epoch(2)
    full = list(s)
    assert sorted(i for _, i in full) == list(range(50)) and all(e == 2 for e, _ in full)
    s.set_epoch(2, start=20)
    assert list(s) == full[20:] and len(s) == 30
    s.set_epoch(3)
    assert [i for _, i in s] != [i for _, i in full]  # a new permutation each epoch


def test_sampler_shards_one_permutation_over_ranks() -> None:
    shards = []
    for rank in range(3):
        s = ResumableSampler(31, seed=1, rank=rank, world_size=3)
        s.set_epoch(0)
        shards.append([i for _, i in s])
    assert all(len(x) == 10 for x in shards)
    flat = [i for x in shards for i in x]
    assert len(set(flat)) == 30  # disjoint, the permutation's tail (1 index) dropped


class _Noisy:
    """A dataset whose items are drawn from the global RNGs (like random augmentation)."""

    def __len__(self) -> int:
        return 10

    def __getitem__(self, i: int) -> tuple[float, float, float]:
        return random.random(), float(np.random.rand()), float(torch.rand(()))


def test_seeded_dataset_is_deterministic_and_leaves_global_rng_alone() -> None:
    ds = SeededDataset(_Noisy(), seed=7)
    torch.manual_seed(0)
    before = torch.rand(3)
    torch.manual_seed(0)
    a = ds[(1, 4)]
    after = torch.rand(3)
    assert torch.equal(before, after)  # loading did not consume the training RNG
    assert ds[(1, 4)] == a and ds[(2, 4)] != a and ds[(1, 5)] != a


def test_rng_state_round_trips_through_weights_only_load(tmp_path) -> None:
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    state = capture_rng()
    path = tmp_path / "rng.pt"
    torch.save(state, path)
    expected = (random.random(), float(np.random.rand()), float(torch.rand(())))
    restore_rng(torch.load(path, weights_only=True))
    assert (random.random(), float(np.random.rand()), float(torch.rand(()))) == expected


def test_ema_ramps_and_tracks() -> None:
    model = nn.Linear(2, 1)
    ema = ModelEMA(model, decay=0.9, tau=1.0)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model)
    d0 = 0.9 * (1 - np.exp(-1.0))
    assert ema.updates == 1
    assert float(ema.module.weight[0, 0]) != 1.0
    w_before = ema.module.weight.clone()
    for _ in range(200):
        ema.update(model)
    assert torch.allclose(ema.module.weight, torch.ones(1, 2), atol=1e-6)
    assert not torch.equal(w_before, ema.module.weight) and d0 < 0.9
    clone = ModelEMA(nn.Linear(2, 1))
    clone.load_state_dict(ema.state_dict())
    assert clone.updates == 201 and torch.equal(clone.module.weight, ema.module.weight)


class _Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(4, 4)
        self.norm = nn.LayerNorm(4)
        self.A_log = nn.Parameter(torch.zeros(4, 2))
        self.D = nn.Parameter(torch.ones(4))
        self.conv = nn.Conv2d(4, 4, 3)


def test_optimizer_groups_skip_decay_on_norms_biases_alog_d() -> None:
    block = _Block()
    opt = build_optimizer(block, TrainConfig())
    decay, no_decay = opt.param_groups
    ids = lambda g: {id(p) for p in g["params"]}  # noqa: E731
    assert ids(decay) == {id(block.proj.weight), id(block.conv.weight)}
    assert id(block.A_log) in ids(no_decay) and id(block.D) in ids(no_decay)
    assert decay["weight_decay"] == 5e-4 and no_decay["weight_decay"] == 0.0
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["nesterov"]
    assert opt.defaults["momentum"] == 0.937 and opt.defaults["lr"] == 0.01
    adamw = build_optimizer(block, TrainConfig(optimizer="adamw", lr=1e-3))
    assert isinstance(adamw, torch.optim.AdamW)


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ConfigError, match="optimizer"):
        TrainConfig(optimizer="rmsprop").validate()
    with pytest.raises(ConfigError, match="modality"):
        TrainConfig(modality="depth").validate()
