"""Every registered scheme inside the NNX models, through the shared list of cases
(tests/helpers/schemes.py): KV-cache decoding = full forward, left padding = unpadded,
finite gradients with fully masked rows, and a tiny model that learns, scheme
parameters included. (Packed documents in the models: tests/test_packing.py.)

Each case's model and compiled program are shared by these checks and the packing one
(tests/helpers/scheme_models.py): compiling is most of their time.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from helpers.scheme_models import VOCAB, WIDTH, alone, inputs, logits, model, program
from helpers.schemes import CASE_IDS, bidirectional_cases

from posenc_jax.nn import TransformerEncoder, TransformerLM, positions_from_padding


@pytest.mark.parametrize("case", CASE_IDS)
def test_kv_cache_decoding_equals_full_forward(case):
    tokens = np.asarray(jax.random.randint(jax.random.PRNGKey(1), (2, WIDTH), 0, VOCAB))
    positions = np.arange(WIDTH) + 30  # positions need not start at 0
    full = logits(case, TransformerLM, tokens, positions=np.broadcast_to(positions, (2, WIDTH)))
    decoder = nnx.clone(model(case, TransformerLM))
    decoder.init_cache(2, WIDTH)
    # A prefill of 4 tokens, then one token at a time. Eager calls: their operations
    # compile once per shape for all schemes, cheaper here than two programs per scheme.
    outs = [decoder(tokens[:, :4], positions=positions[:4], decode=True)]
    for i in range(4, WIDTH):
        outs.append(decoder(tokens[:, i : i + 1], positions=positions[i : i + 1], decode=True))
    np.testing.assert_allclose(jnp.concatenate(outs, axis=1), full, atol=2e-4, rtol=2e-4)


PADDING = [(c, TransformerLM) for c in CASE_IDS] + [
    (c, TransformerEncoder) for c in bidirectional_cases()
]


@pytest.mark.parametrize(
    ("case", "cls"), PADDING, ids=[f"{c}-{cls.__name__}" for c, cls in PADDING]
)
def test_left_padded_batch_equals_unpadded(case, cls):
    seqs = [np.array([3, 1, 4, 1, 5, 9, 2]), np.array([6, 5, 3])]
    tokens = np.zeros((2, WIDTH), np.int32)
    mask = np.zeros((2, WIDTH), bool)
    for i, s in enumerate(seqs):
        tokens[i, WIDTH - len(s) :] = s
        mask[i, WIDTH - len(s) :] = True
    # The positions a padded batch gets by default: 0, 1, ... on the real tokens.
    padded = logits(case, cls, tokens, positions=positions_from_padding(mask), padding_mask=mask)
    for i, (s, ref) in enumerate(zip(seqs, alone(case, cls, seqs), strict=True)):
        np.testing.assert_allclose(padded[i, WIDTH - len(s) :], ref, atol=2e-4, rtol=2e-4)


@pytest.mark.parametrize("case", bidirectional_cases())
def test_gradients_finite_with_fully_masked_rows(case):
    rows = np.array([[True] * WIDTH, [False] * WIDTH])  # the second one fully masked
    # Plus filler rows: the shapes of the other eager calls, whose operations are compiled.
    tokens, positions, mask, segment_ids, *_ = inputs(
        np.ones((2, WIDTH)), positions=[np.arange(WIDTH)] * 2, padding_mask=rows
    )

    def loss(m):
        logits = m(tokens, positions=positions, padding_mask=mask, segment_ids=segment_ids)
        return jnp.mean(logits**2)

    value, grads = nnx.value_and_grad(loss)(model(case, TransformerEncoder))
    assert np.isfinite(value)
    for g in jax.tree.leaves(grads):
        assert np.all(np.isfinite(g))


_ADAM = optax.adam(1e-2)


@jax.jit
def _adam_step(flat, grads, opt_state):
    updates, opt_state = _ADAM.update(grads, opt_state, flat)
    return optax.apply_updates(flat, updates), opt_state


def _scheme_params(m):
    leaves = jax.tree.leaves(m.pos_params.get_value())
    leaves += jax.tree.leaves(m.blocks[0].attn.pos_params.get_value())
    return [np.asarray(x) for x in leaves]


@pytest.mark.parametrize("case", CASE_IDS)
def test_tiny_lm_overfits_a_batch_and_trains_the_scheme_parameters(case):
    tokens = np.asarray(jax.random.randint(jax.random.PRNGKey(2), (4, WIDTH + 1), 0, VOCAB))
    # Adam on the parameters as one vector, each step through the case's program: its
    # loss is the mean cross-entropy of these 4 rows (the filler rows weigh 0).
    p = program(case)
    batch = inputs(tokens[:, :-1], targets=tokens[:, 1:])
    flat, opt_state, losses = p.flat, _ADAM.init(p.flat), []
    for _ in range(60):
        (loss, _), grads = p.fn(flat, *batch)
        flat, opt_state = _adam_step(flat, grads, opt_state)
        losses.append(loss)
    losses = [float(x) for x in losses]
    assert losses[-1] < 0.3 * losses[0], (losses[0], losses[-1])
    # The scheme's own parameters (tables, kernels, MLPs) were trained.
    before, trained = model(case, TransformerLM), nnx.merge(p.graphdef, p.unravel(flat), p.rest)
    for b, a in zip(_scheme_params(before), _scheme_params(trained), strict=True):
        assert not np.allclose(a, b)
