"""fit_to_time: the schedule is refitted after epochs 1-3 and can grow back after a slow start."""
from __future__ import annotations

from types import SimpleNamespace

from dlrmamba_core.engine.trainer import Trainer


def _trainer(epochs: int, budget_s: float) -> SimpleNamespace:
    t = SimpleNamespace(cfg=SimpleNamespace(fit_to_time=True, max_time_s=budget_s, epochs=epochs),
                        epoch=0, _epochs_cap=epochs, _fit_t1=None,
                        info=SimpleNamespace(distributed=False),
                        meta=SimpleNamespace(kind="train", variant="nano"))
    t._set_epochs = lambda n: setattr(t.cfg, "epochs", n)
    return t


def _fit(t: SimpleNamespace, elapsed_s: float, epoch_s: float) -> int:
    t.epoch += 1
    Trainer._fit_schedule(t, elapsed_s, epoch_s)  # type: ignore[arg-type]
    return int(t.cfg.epochs)


def test_a_slow_first_epoch_no_longer_shortens_the_schedule_for_good() -> None:
    t = _trainer(epochs=300, budget_s=600.0)
    # epoch 1 takes 30 s (start-up, other runs building caches), then 5 s per epoch
    assert _fit(t, 30.0, 30.0) == 1 + int(0.95 * 570 / 30)  # 19: fitted to the slow epoch
    assert _fit(t, 35.0, 5.0) == 2 + int(0.95 * 565 / 5)  # 109: lengthened again
    assert _fit(t, 40.0, 5.0) == 3 + int(0.95 * 560 / 5)  # 109: mean of epochs 2-3
    assert _fit(t, 45.0, 5.0) == 109  # fixed from epoch 4 on


def test_the_configured_epochs_stay_the_upper_bound_and_epoch_3_uses_the_mean() -> None:
    t = _trainer(epochs=20, budget_s=600.0)
    assert [_fit(t, 5.0, 5.0), _fit(t, 10.0, 5.0)] == [20, 20]
    t = _trainer(epochs=300, budget_s=100.0)
    _fit(t, 10.0, 10.0)
    _fit(t, 12.0, 2.0)
    # epoch 3 alone took 1 s; epochs 2-3 (one with validation) took (16 - 10) / 2 = 3 s each
    assert _fit(t, 16.0, 1.0) == 3 + int(0.95 * 84 / 3)
