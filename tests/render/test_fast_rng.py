"""The vectorised per-sample generator (ferdata.render.fast_rng; docs/rendering.md) is
NumPy's ``default_rng(SeedSequence(seed, spawn_key=(face, i)))`` bit for bit."""
import numpy as np
import pytest

from ferdata.render import fast_rng
from ferdata.render.params import N_UNIFORMS, sample_rng, sample_uniforms


def _numpy(seed, faces, samples, n=N_UNIFORMS):
    return np.stack([sample_rng(seed, f, i).random(n) for f, i in zip(faces, samples)])


@pytest.mark.parametrize("seed", [0, 1, 2000, 2**31 - 1, 2**32, 2**64 + 3, 2**128 - 1])
def test_equals_numpy_bit_for_bit(seed):
    rng = np.random.default_rng(seed % 1000)
    faces = np.concatenate([[0, 0, 1, 2**32 - 1, 326], rng.integers(0, 2**32, 60)])
    samples = np.concatenate([[0, 1, 0, 2**32 - 1, 9230], rng.integers(0, 2**32, 60)])
    np.testing.assert_array_equal(fast_rng.uniforms(seed, faces, samples, 40), _numpy(seed, faces, samples, 40))


def test_sample_uniforms_uses_it_and_falls_back_outside_its_range():
    g = np.arange(5000, 5100)
    assert fast_rng.supported(7, g % 3, g // 3)
    np.testing.assert_array_equal(sample_uniforms(7, g % 3, g // 3), _numpy(7, g % 3, g // 3))
    big = np.array([2**32, 5])  # a face index past 32 bits: one generator per sample, same answer
    assert not fast_rng.supported(7, big, big) and not fast_rng.supported(2**128, g, g)
    np.testing.assert_array_equal(sample_uniforms(7, big, big), _numpy(7, big, big))
    assert sample_uniforms(7, [], []).shape == (0, N_UNIFORMS)


def test_out_of_range_is_refused():
    with pytest.raises(ValueError, match="seed"):
        fast_rng.uniforms(-1, [0], [0], 3)
    with pytest.raises(ValueError, match="face"):
        fast_rng.uniforms(0, [-1], [0], 3)
