"""pass@k estimator and majority voting."""
import math

import pytest

from r1.eval.metrics import k_ladder, majority_vote, mean, pass_at_k, pass_at_k_exact, stderr


@pytest.mark.parametrize("n,c,k,expected", [
    (1, 0, 1, 0.0), (1, 1, 1, 1.0),
    (10, 0, 1, 0.0), (10, 3, 1, 0.3),  # pass@1 is the fraction correct
    (10, 10, 5, 1.0), (10, 7, 4, 1.0),  # n - c < k: every subset has a correct sample
    (4, 1, 2, 0.5),  # 1 - C(3,2)/C(4,2) = 1 - 3/6
    (5, 2, 2, 0.7),  # 1 - C(3,2)/C(5,2) = 1 - 3/10
    (16, 4, 16, 1.0),
])
def test_pass_at_k_known_cases(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected)


def test_pass_at_k_matches_closed_form_everywhere():
    for n in range(1, 25):
        for c in range(n + 1):
            for k in range(1, n + 1):
                assert pass_at_k(n, c, k) == pytest.approx(1 - math.comb(n - c, k) / math.comb(n, k), abs=1e-12)
                assert pass_at_k(n, c, k) == pytest.approx(pass_at_k_exact(n, c, k), abs=1e-12)


def test_pass_at_k_is_stable_for_large_n():
    # C(1000, 500) overflows a float; the product form does not.
    assert 0.0 < pass_at_k(1000, 1, 500) == pytest.approx(0.5)
    assert pass_at_k(1000, 0, 500) == 0.0


def test_pass_at_k_validates():
    with pytest.raises(ValueError):
        pass_at_k(4, 5, 1)
    with pytest.raises(ValueError):
        pass_at_k(4, 1, 5)
    with pytest.raises(ValueError):
        pass_at_k(4, 1, 0)


def test_majority_vote_counts_and_ignores_missing_answers():
    assert majority_vote(["3", "4", "4", None, None, None]) == ("4", 1)
    assert majority_vote([None, None]) == (None, None)
    assert majority_vote([]) == (None, None)


def test_majority_vote_ties_go_to_the_first_answer_seen():
    assert majority_vote(["b", "a", "a", "b"]) == ("b", 0)
    assert majority_vote(["a", "b", "b", "a"]) == ("a", 0)
    assert majority_vote([None, "z", "y"]) == ("z", 1)
    # deterministic across repeated calls and independent of string hashing
    assert all(majority_vote(["x", "y"]) == ("x", 0) for _ in range(20))


def test_helpers():
    assert k_ladder(16) == [1, 2, 4, 8, 16] and k_ladder(1) == [1] and k_ladder(6) == [1, 2, 4, 6]
    assert mean([]) is None and mean([1, 2]) == 1.5
    assert stderr([1.0]) is None and stderr([0.0, 1.0]) == pytest.approx(0.5)
