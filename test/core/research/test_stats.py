"""research.stats: Welch's t-test the results page judges recipes with."""

from __future__ import annotations

import random

import pytest

from dlrmamba_core.research.stats import incomplete_beta, t_two_sided_p, welch


@pytest.mark.parametrize(("t", "df", "p"), [
    (12.7062, 1, 0.05), (4.302653, 2, 0.05), (2.776445, 4, 0.05), (2.228139, 10, 0.05),
    (9.924843, 2, 0.01), (1.959964, 1e7, 0.05), (0.0, 3, 1.0)])
def test_two_sided_p_matches_the_t_tables(t: float, df: float, p: float) -> None:
    assert t_two_sided_p(t, df) == pytest.approx(p, rel=1e-5, abs=1e-9)
    assert t_two_sided_p(-t, df) == pytest.approx(p, rel=1e-5, abs=1e-9)


def test_incomplete_beta_edges_and_symmetry() -> None:
    assert incomplete_beta(2.0, 3.0, 0.0) == 0.0 and incomplete_beta(2.0, 3.0, 1.0) == 1.0
    # I_x(a, b) = 1 - I_{1-x}(b, a); I_x(1, 1) = x
    assert incomplete_beta(2.5, 0.5, 0.3) == pytest.approx(1 - incomplete_beta(0.5, 2.5, 0.7))
    assert incomplete_beta(1.0, 1.0, 0.37) == pytest.approx(0.37)
    with pytest.raises(ValueError, match="x must be in"):
        incomplete_beta(1.0, 1.0, 1.5)
    with pytest.raises(ValueError, match="degrees of freedom"):
        t_two_sided_p(1.0, 0)


def test_welch_by_hand_and_where_it_has_nothing_to_test() -> None:
    # a = 82, 83 (var 0.5); b = 79, 80, 81 (var 1): t = 2.5 / sqrt(0.5/2 + 1/3),
    # df = (0.25 + 1/3)^2 / (0.25^2 / 1 + (1/3)^2 / 2)
    w = welch([82.0, 83.0], [79.0, 80.0, 81.0])
    assert w is not None
    assert w.diff == pytest.approx(2.5)
    assert w.t == pytest.approx(2.5 / (0.25 + 1 / 3) ** 0.5)
    assert w.df == pytest.approx((0.25 + 1 / 3) ** 2 / (0.0625 + 1 / 18))
    assert 0.04 < w.p < 0.05
    assert welch([1.0], [1.0, 2.0]) is None  # one value a side: no spread
    assert welch([3.0, 3.0], [2.0, 2.0]) is None  # no spread at all
    one_sided = welch([3.0, 3.0, 3.0], [1.0, 2.0, 3.0])  # one side without spread still tests
    assert one_sided is not None and one_sided.p == pytest.approx(t_two_sided_p(
        1.0 / (1 / 3) ** 0.5, 2.0))


def test_welch_agrees_with_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    rng = random.Random(0)
    for _ in range(300):
        a = [rng.gauss(0.0, rng.uniform(0.05, 2.0)) for _ in range(rng.randint(2, 6))]
        b = [rng.gauss(rng.uniform(-2, 2), rng.uniform(0.05, 2.0))
             for _ in range(rng.randint(2, 6))]
        w = welch(a, b)
        ref = stats.ttest_ind(a, b, equal_var=False)
        assert w is not None
        assert w.t == pytest.approx(ref.statistic, rel=1e-9)
        assert w.p == pytest.approx(ref.pvalue, rel=1e-7, abs=1e-12)
