"""pass@k (Chen et al. 2021) against hand values and a brute-force count over every k-subset
of the n samples."""

import itertools
from math import comb

import pytest

from jaxrl_reason.rl.validation import mean_and_se, pass_at_k, pass_at_ks


def brute_force(n: int, c: int, k: int) -> float:
    """The fraction of the C(n, k) subsets of k samples (the first c correct) holding a correct
    one."""
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(i < c for i in s) for s in subsets) / len(subsets)


def test_pass_at_k_hand_values():
    # 1 - C(n - c, k) / C(n, k)
    assert pass_at_k(4, 1, 1) == pytest.approx(0.25)
    assert pass_at_k(5, 2, 2) == pytest.approx(1 - 3 / 10)  # C(3,2) / C(5,2)
    assert pass_at_k(5, 2, 3) == pytest.approx(1 - 1 / 10)  # C(3,3) / C(5,3): n - c == k
    assert pass_at_k(5, 2, 4) == 1.0  # n - c < k: every 4 of 5 holds a correct one
    assert pass_at_k(6, 0, 3) == 0.0
    assert pass_at_k(6, 6, 1) == 1.0
    assert pass_at_k(10, 3, 5) == pytest.approx(1 - comb(7, 5) / comb(10, 5))  # 1 - 21/252
    with pytest.raises(ValueError, match="pass@5"):
        pass_at_k(4, 1, 5)


def test_pass_at_k_equals_a_count_over_every_subset():
    for n in range(1, 8):
        for c in range(n + 1):
            for k in range(1, n + 1):
                assert pass_at_k(n, c, k) == pytest.approx(brute_force(n, c, k), abs=1e-12), \
                    (n, c, k)


def test_pass_at_ks_averages_over_problems():
    verdicts = [[True, False, False, False], [False] * 4, [True, True, False, False]]
    # k = 1: (1/4 + 0 + 2/4) / 3; k = 2: (1 - 3/6 + 0 + 1 - 1/6) / 3
    got = pass_at_ks(verdicts, [1, 2])
    assert got[1] == pytest.approx(0.75 / 3)
    assert got[2] == pytest.approx((0.5 + 5 / 6) / 3)


def test_mean_and_standard_error_by_hand():
    # [1, 0, 1, 1]: mean .75, sample std sqrt((3 * .0625 + .5625) / 3) = .5, se .5 / 2
    assert mean_and_se([1, 0, 1, 1]) == pytest.approx((0.75, 0.25))
    assert mean_and_se([0.3]) == (0.3, 0.0)
