"""Within-problem ranking metrics against hand counts: the per-problem AUC best-of-N depends on
(not the pooled one, which difficulty alone inflates), a PRM's same-step accuracy, and the
text-keyed random baseline."""

import numpy as np

from jaxrl_reason.verifiers import ranking


def test_within_problem_auc_averages_problems_with_both_classes():
    scores = np.array([[0.9, 0.5, 0.1],    # right 0.9 vs wrong 0.5, 0.1: AUC 1
                       [0.2, 0.6, 0.2],    # right 0.2 vs wrong 0.6 (0), 0.2 (tie: .5): .25
                       [0.8, 0.7, 0.6]])   # all right: no pairs, left out
    correct = np.array([[1, 0, 0], [1, 0, 0], [1, 1, 1]], bool)
    got = ranking.within_problem_auc(scores, correct)
    assert got["problems"] == 2 and got["auc"] == 0.625
    np.testing.assert_allclose(got["auc_se"], np.std([1.0, 0.25], ddof=1) / np.sqrt(2))
    # pooled over problems the same scores look better than chance for a reason best-of-N
    # cannot use: problem 0's right answer outscores problem 1's wrong ones
    assert ranking.pairwise_auc(scores[correct], scores[~correct]) > got["auc"]


def test_a_difficulty_only_score_is_at_chance_within_problems():
    """A score that is one number per problem (its difficulty) ranks no two solutions of a
    problem: within-problem AUC exactly 0.5, though pooled it separates right from wrong."""
    rng = np.random.default_rng(0)
    ease = rng.uniform(size=50)
    correct = rng.uniform(size=(50, 16)) < ease[:, None]
    scores = np.repeat(ease[:, None], 16, axis=1)
    assert ranking.within_problem_auc(scores, correct)["auc"] == 0.5
    assert ranking.pairwise_auc(scores[correct], scores[~correct]) > 0.7


def test_same_step_accuracy_compares_right_and_wrong_lines_at_one_step_of_one_problem():
    problem = [0, 0, 0, 1]
    steps = [[0.9, 0.8, 0.7], [0.9, 0.3, 0.95], [0.5, 0.6, 0.1], [0.2, 0.1]]
    labels = [[True, True, True], [True, False, True], [False, True, True], [True, False]]
    # problem 0, step 0: right {0.9, 0.9} vs wrong {0.5}: 2 of 2; step 1: right {0.8} vs
    # wrong {0.3}: 1 of 1 (solution 2 stopped counting after its wrong step 0; solution 1's
    # step 2 comes after its wrong step); problem 1 has no wrong line beside a right one
    got = ranking.same_step_accuracy(problem, steps, labels)
    assert got == {"accuracy": 1.0, "pairs": 3}
    flipped = ranking.same_step_accuracy(problem, [[0.1, 0.1, 0.1], *steps[1:]], labels)
    assert flipped == {"accuracy": 1 / 3, "pairs": 3}  # 0.1 > 0.5 no, 0.9 > 0.5, 0.1 > 0.3 no


def test_text_hash_scores_are_uniform_and_equal_for_equal_texts():
    texts = [(1, 2, 3), (1, 2, 3), (3, 2, 1)] + [(i,) for i in range(2000)]
    s = ranking.text_hash_scores(texts, seed=0)
    assert s[0] == s[1] != s[2] and 0 <= s.min() and s.max() < 1
    assert abs(s[3:].mean() - 0.5) < 0.03
    assert not np.array_equal(s, ranking.text_hash_scores(texts, seed=1))
