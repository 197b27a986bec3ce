"""fit_to_time: the schedule is refitted after each epoch of its first 20% (at least 3), from
the mean training time since epoch 1 plus the end-of-epoch work of the last validation cycle,
and can grow back after a slow start or a slow first validation."""
from __future__ import annotations

from types import SimpleNamespace

from dlrmamba_core.engine.trainer import Trainer


def _trainer(epochs: int, budget_s: float, val_every: int = 1) -> SimpleNamespace:
    t = SimpleNamespace(cfg=SimpleNamespace(fit_to_time=True, max_time_s=budget_s, epochs=epochs,
                                            val_every=val_every),
                        epoch=0, _epochs_cap=epochs, _fit_costs=[], _fit_from=0,
                        _fit_kind=None, task=SimpleNamespace(),
                        info=SimpleNamespace(distributed=False),
                        meta=SimpleNamespace(kind="train", variant="nano"))
    t._set_epochs = lambda n: setattr(t.cfg, "epochs", n)
    return t


def _fit(t: SimpleNamespace, elapsed_s: float, epoch_s: float,
         train_s: float | None = None) -> int:
    t.epoch += 1
    Trainer._fit_schedule(t, elapsed_s, epoch_s, train_s)  # type: ignore[arg-type]
    return int(t.cfg.epochs)


def test_a_slow_first_epoch_no_longer_shortens_the_schedule_for_good() -> None:
    t = _trainer(epochs=300, budget_s=600.0)
    # epoch 1 takes 30 s (start-up, other runs building caches), then 5 s per epoch
    assert _fit(t, 30.0, 30.0) == 1 + int(0.95 * 570 / 30)  # 19: fitted to the slow epoch
    assert _fit(t, 35.0, 5.0) == 2 + int(0.95 * 565 / 5)  # 109: lengthened again
    assert _fit(t, 40.0, 5.0) == 3 + int(0.95 * 560 / 5)  # 109
    # refitted through epoch ceil(0.2 * 109) = 22, fixed after it
    elapsed = 40.0
    for _ in range(4, 23):
        elapsed += 5.0
        _fit(t, elapsed, 5.0)
    assert t.cfg.epochs == 22 + int(0.95 * (600 - elapsed) / 5)
    before = t.cfg.epochs
    assert _fit(t, elapsed + 50.0, 50.0) == before  # epoch 23: no refit, however slow


def test_a_slow_first_validation_is_left_behind_by_the_last_cycle() -> None:
    """Validation every 2 epochs; trains 8 s an epoch; the first validation (epoch 2) of the
    untrained model costs 12 s, later ones 4 s: the refit follows the latest cycle, so the
    schedule ends up fitted to 8 + 4 / 2 = 10 s an epoch, not the 14 s of epochs 2-3."""
    t = _trainer(epochs=300, budget_s=600.0, val_every=2)
    assert _fit(t, 21.0, 21.0) == 1 + int(0.95 * 579 / 21)
    assert _fit(t, 41.0, 20.0, 8.0) == 2 + int(0.95 * 559 / 20)  # one epoch: 8 + 12
    assert _fit(t, 49.0, 8.0, 8.0) == 3 + int(0.95 * 551 / 14)  # 8 + (12 + 0) / 2
    assert _fit(t, 61.0, 12.0, 8.0) == 4 + int(0.95 * 539 / 10)  # 8 + (0 + 4) / 2
    assert _fit(t, 69.0, 8.0, 8.0) == 5 + int(0.95 * 531 / 10)
    # what a 14 s estimate would have frozen at epoch 3 (the rule before): 40 epochs
    assert t.cfg.epochs > 3 + int(0.95 * 551 / 14) + 10


def test_the_configured_epochs_stay_the_upper_bound() -> None:
    t = _trainer(epochs=20, budget_s=600.0)
    assert [_fit(t, 5.0, 5.0), _fit(t, 10.0, 5.0)] == [20, 20]
    t = _trainer(epochs=300, budget_s=100.0)
    _fit(t, 10.0, 10.0)
    _fit(t, 12.0, 2.0)
    # epochs 2 and 3 trained 2 s and 1 s: 1.5 s an epoch (no end-of-epoch work given)
    assert _fit(t, 13.0, 1.0) == 3 + int(0.95 * 87 / 1.5)


def test_a_change_of_step_cost_starts_a_new_training_time_mean() -> None:
    """SAD's structural terms in the first 2 epochs only (``DistillTask.terms_on``): epochs of
    24 s, then task-only epochs of 16 s. From the first task-only epoch on the schedule is
    fitted to 16 s (plus the last validation cycle's end-of-epoch work), not to a mean that
    still holds the slower SAD epochs."""
    t = _trainer(epochs=300, budget_s=400.0)
    t.task.terms_on = True
    assert _fit(t, 30.0, 30.0) == 1 + int(0.95 * 370 / 30)
    assert _fit(t, 54.0, 24.0) == 2 + int(0.95 * 346 / 24)
    t.task.terms_on = False
    assert _fit(t, 70.0, 16.0) == 3 + int(0.95 * 330 / 16)  # not (24 + 16) / 2 = 20
    assert _fit(t, 86.0, 16.0) == 4 + int(0.95 * 314 / 16)
    # a task without the attribute keeps one mean over all its epochs (the rule above)
    plain = _trainer(epochs=300, budget_s=400.0)
    _fit(plain, 30.0, 30.0)
    _fit(plain, 54.0, 24.0)
    assert _fit(plain, 70.0, 16.0) == 3 + int(0.95 * 330 / 20)
