"""Every registered scheme inside the NNX models, through the shared list of cases
(tests/helpers/schemes.py): KV-cache decoding = full forward, left padding = unpadded,
finite gradients with fully masked rows, and a tiny model that learns, scheme
parameters included.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from helpers.schemes import CASE_IDS, CASES, SCHEME_CASES, bidirectional_cases

from posenc_jax.nn import TransformerEncoder, TransformerLM

VOCAB = 11


# -- models -------------------------------------------------------------------------------


def _model(spec, *, cls=TransformerLM, seed=0, **kw):
    opts = dict(num_layers=2, d_model=32, num_heads=4)
    opts.update(kw)
    return cls(VOCAB, scheme=spec, rngs=nnx.Rngs(seed), **opts)


@pytest.mark.parametrize("spec", CASES, ids=CASE_IDS)
def test_kv_cache_decoding_equals_full_forward(spec):
    model = _model(spec, num_layers=1)
    tokens = jax.random.randint(jax.random.PRNGKey(1), (2, 10), 0, VOCAB)
    offset = 30  # positions need not start at 0
    full = nnx.jit(lambda m, x: m(x, positions=jnp.arange(10) + offset))(model, tokens)
    model.init_cache(2, 10)
    step = nnx.jit(lambda m, x, p: m(x, positions=p, decode=True))
    # A prefill of 4 tokens, then one token at a time.
    outs = [step(model, tokens[:, :4], jnp.arange(4) + offset)]
    for i in range(4, 10):
        outs.append(step(model, tokens[:, i : i + 1], jnp.array([i + offset])))
    np.testing.assert_allclose(jnp.concatenate(outs, axis=1), full, atol=2e-4, rtol=2e-4)


PADDING = [(c, TransformerLM) for c in CASE_IDS] + [
    (c, TransformerEncoder) for c in bidirectional_cases()
]


@pytest.mark.parametrize(
    ("case", "cls"), PADDING, ids=[f"{c}-{cls.__name__}" for c, cls in PADDING]
)
def test_left_padded_batch_equals_unpadded(case, cls):
    model = _model(SCHEME_CASES[case], cls=cls, num_layers=1)
    seqs = [np.array([3, 1, 4, 1, 5, 9, 2]), np.array([6, 5, 3])]
    width = 7
    tokens = np.zeros((2, width), np.int32)
    mask = np.zeros((2, width), bool)
    for i, s in enumerate(seqs):
        tokens[i, width - len(s) :] = s
        mask[i, width - len(s) :] = True
    padded = nnx.jit(lambda m, x, pm: m(x, padding_mask=pm))(model, tokens, mask)
    for i, s in enumerate(seqs):
        alone = model(jnp.asarray(s)[None])
        np.testing.assert_allclose(padded[i, width - len(s) :], alone[0], atol=2e-4, rtol=2e-4)


@pytest.mark.parametrize("case", bidirectional_cases())
def test_gradients_finite_with_fully_masked_rows(case):
    model = _model(SCHEME_CASES[case], cls=TransformerEncoder, num_layers=1)
    tokens = jnp.ones((2, 6), jnp.int32)
    mask = jnp.array([[True] * 6, [False] * 6])

    def loss(m):
        logits = m(tokens, padding_mask=mask, positions=jnp.arange(6))
        return jnp.mean(logits**2)

    value, grads = nnx.value_and_grad(loss)(model)
    assert np.isfinite(value)
    for g in jax.tree.leaves(grads):
        assert np.all(np.isfinite(g))


@pytest.mark.parametrize("spec", CASES, ids=CASE_IDS)
def test_tiny_lm_overfits_a_batch_and_trains_the_scheme_parameters(spec):
    model = _model(spec, num_layers=1)
    tokens = jax.random.randint(jax.random.PRNGKey(2), (4, 12), 0, VOCAB)
    opt = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)

    def loss_fn(m):
        logits = m(tokens[:, :-1])
        return optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:]).mean()

    def scheme_params(m):
        leaves = jax.tree.leaves(m.pos_params.get_value())
        leaves += jax.tree.leaves(m.blocks[0].attn.pos_params.get_value())
        return [np.asarray(x) for x in leaves]

    before = scheme_params(model)

    @nnx.jit
    def step(m, o):
        loss, grads = nnx.value_and_grad(loss_fn)(m)
        o.update(m, grads)
        return loss

    losses = [float(step(model, opt)) for _ in range(60)]
    assert losses[-1] < 0.3 * losses[0], (losses[0], losses[-1])
    # The scheme's own parameters (tables, kernels, MLPs) were trained.
    for b, a in zip(before, scheme_params(model), strict=True):
        assert not np.allclose(a, b)
