"""Batches from token examples and from sampler output: explicit masks and positions, the
sampler's own ids, no EOS added to a truncated row, step boundaries, and the too-long error."""

import numpy as np
import pytest

from jaxrl_reason.data.batching import Example, make_batch, step_ends
from jaxrl_reason.errors import UserError
from jaxrl_reason.rollouts import batch_from_samples
from jaxrl_reason.sampling.sampler import Samples

NL, EOS = 10, 2


def test_make_batch_lays_out_rows_with_explicit_masks():
    batch = make_batch([Example((1, 5, 6), (7, 0, EOS)), Example((1, 9), (EOS,))], 8, pad_id=3)
    np.testing.assert_array_equal(batch["tokens"][0], [1, 5, 6, 7, 0, EOS, 3, 3])
    np.testing.assert_array_equal(batch["input_mask"][0], [1, 1, 1, 1, 1, 1, 0, 0])
    np.testing.assert_array_equal(batch["positions"][1], [0, 1, 2, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(batch["loss_mask"][0], [0, 0, 0, 1, 1, 1, 0, 0])
    np.testing.assert_array_equal(batch["loss_mask"][1], [0, 0, 1, 0, 0, 0, 0, 0])


def test_an_example_longer_than_the_batch_is_an_error_not_a_cut():
    with pytest.raises(UserError, match="9 tokens exceeds the batch length 8.*max_len"):
        make_batch([Example((1, 2, 3, 4), (5, 6, 7, 8, EOS))], 8, pad_id=0)


def test_batch_from_samples_keeps_the_sampler_ids_and_adds_no_eos():
    samples = Samples(tokens=np.asarray([[4, EOS, 0], [5, 6, 7]]),
                      logprobs=np.asarray([[-1.0, -2.0, 0.0], [-3.0, -4.0, -5.0]]),
                      lengths=np.asarray([2, 3]), finished=np.asarray([True, False]),
                      prompt_index=np.asarray([0, 1]))
    batch = batch_from_samples([[1, 9], [1]], samples, pad_id=0)
    np.testing.assert_array_equal(batch["tokens"], [[1, 9, 4, EOS], [1, 5, 6, 7]])
    np.testing.assert_array_equal(batch["loss_mask"], [[0, 0, 1, 1], [0, 1, 1, 1]])
    np.testing.assert_array_equal(batch["old_logprobs"], [[0, 0, -1, -2], [0, -3, -4, -5]])
    np.testing.assert_array_equal(batch["finished"], [True, False])


@pytest.mark.parametrize("ids, ends", [
    ([4, 5, NL, 6, NL, EOS], [2, 4]),  # a stop token right after a newline ends no step
    ([4, 5, NL, 6, 7, EOS], [2, 4]),  # the last line has no newline: it ends before EOS
    ([4, 5, NL, 6, 7], [2, 4]),  # truncated mid-line: the partial line is a step
    ([NL, NL], [0, 1]),
    ([EOS], []),
])
def test_step_ends(ids, ends):
    assert step_ends(ids, {NL}, {EOS}) == ends
