"""RoFormer's long-term decay bound (section 3.4.3) against its formula."""

import jax.numpy as jnp
import numpy as np
import pytest

from posenc_jax import rope
from posenc_jax.rope import rope_decay_bound


def test_rope_decay_bound_matches_roformer_formula():
    d = 32
    theta = 10000.0 ** (-2.0 * np.arange(d // 2) / d)  # theta_i = 10000^(-2(i-1)/d)
    r = np.array([0, 1, 5, 50, 300, 2000])
    s = np.cumsum(np.exp(1j * r[:, None] * theta[None, :]), axis=-1)  # S_j, j = 1 .. d/2
    ref = np.abs(s).mean(-1)
    inv_freq, _ = rope.rope_frequencies(d)
    np.testing.assert_allclose(rope_decay_bound(r, inv_freq), ref, rtol=1e-4)
    assert float(rope_decay_bound(jnp.array(0), inv_freq)) == pytest.approx((d / 2 + 1) / 2)
    with pytest.raises(ValueError, match="inv_freq"):
        rope_decay_bound(r, jnp.ones((2, 2)))
