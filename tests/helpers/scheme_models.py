"""One model per scheme case, and the compiled program its model-level checks share
(tests/test_scheme_models.py, and the packed documents of tests/test_packing.py).

Compiling is most of these checks' time (XLA:CPU, tiny shapes). So each case builds
its model once (`model`), and every forward check takes the same inputs (`inputs`):
``ROWS`` rows of ``WIDTH`` tokens with positions, padding mask and segment ids, always
all of them (0..WIDTH-1, real tokens and one segment where a check sets none; unused
rows are filler). A decoder runs them through one compiled program (`program`) that
also gives a weighted cross-entropy and its gradient: the full forward of the KV-cache
check, the left-padded batch, the packed documents and every training step are one
compilation. The single calls of the other checks (an encoder's, the blockwise path)
run eagerly: eager operations compile once per shape for all schemes, which measured
cheaper than a program per scheme.

A sequence alone, the reference of the padding and packing checks (`alone`): in a
decoder, the same program on a row holding the sequence from position 0 followed by any
tokens (a token attends only to earlier ones); in an encoder, which attends both ways,
a call on exactly the sequence, without a mask.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.flatten_util import ravel_pytree

from helpers.schemes import SCHEME_CASES
from posenc_jax.attention import AttentionConfig
from posenc_jax.nn import TransformerLM

VOCAB = 11
ROWS, WIDTH = 6, 10
FILLER = (3 * np.arange(WIDTH) + 2) % VOCAB  # tokens of unused rows and after a sequence


@functools.cache
def model(case: str, cls: type) -> nnx.Module:
    """The case's model (1 layer), shared by its checks: clone it before changing it."""
    return cls(VOCAB, scheme=SCHEME_CASES[case], num_layers=1, d_model=32, num_heads=4,
               rngs=nnx.Rngs(0))  # fmt: skip


class Program(NamedTuple):
    """A decoder's parameters as one vector, its compiled program, and how to rebuild it.

    ``fn(flat, *inputs(...)) -> ((loss, logits), d loss / d flat)``, the loss being the
    mean cross-entropy of the rows of weight 1; ``nnx.merge(graphdef, unravel(flat),
    rest)`` is the model with parameters ``flat``.
    """

    flat: jax.Array
    unravel: Any
    graphdef: Any
    rest: Any
    fn: Any


@functools.cache
def program(case: str) -> Program:
    graphdef, params, rest = nnx.split(model(case, TransformerLM), nnx.Param, ...)
    flat, unravel = ravel_pytree(params)

    def loss(flat, tokens, positions, padding_mask, segment_ids, targets, weights):
        m = nnx.merge(graphdef, unravel(flat), rest)
        logits = m(tokens, positions=positions, padding_mask=padding_mask, segment_ids=segment_ids)
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean(axis=-1)
        return jnp.sum(weights * ce) / jnp.sum(weights), logits

    fn = jax.jit(jax.value_and_grad(loss, has_aux=True))
    return Program(flat, unravel, graphdef, rest, fn)


def inputs(tokens, *, positions=None, padding_mask=None, segment_ids=None, targets=None):
    """[ROWS, WIDTH] tokens, positions, padding mask, segment ids, targets and [ROWS] row
    weights from n <= ROWS rows of WIDTH tokens (weight 1; the unused rows weight 0)."""
    tokens = np.asarray(tokens, np.int32)
    n = tokens.shape[0]
    if tokens.shape[1] != WIDTH or n > ROWS:
        raise ValueError(f"at most {ROWS} rows of {WIDTH} tokens; got shape {tokens.shape}")
    columns = {  # name: (the n rows' values, None for the fill; the fill: unused rows get it)
        "tokens": (tokens, FILLER),
        "positions": (positions, np.arange(WIDTH)),
        "padding_mask": (padding_mask, np.ones(WIDTH, bool)),
        "segment_ids": (segment_ids, np.zeros(WIDTH, np.int32)),
        "targets": (targets, FILLER),
        "weights": (np.ones(n, np.float32), np.zeros((), np.float32)),
    }
    out = []
    for given, fill in columns.values():
        shape = fill.shape
        rows = np.broadcast_to(fill, (n, *shape)) if given is None else np.asarray(given)
        out.append(jnp.asarray(np.concatenate([rows, np.broadcast_to(fill, (ROWS - n, *shape))])))
    return out


def _call(m, tokens, positions, padding_mask, segment_ids, *_):
    return m(tokens, positions=positions, padding_mask=padding_mask, segment_ids=segment_ids)


def logits(case: str, cls: type, tokens, **kw) -> jax.Array:
    """[n, WIDTH, C] logits of n <= ROWS rows of WIDTH tokens (``kw``: as `inputs`).

    A decoder's come from `program`, an encoder's from an eager call.
    """
    if cls is TransformerLM:
        p = program(case)
        (_, out), _ = p.fn(p.flat, *inputs(tokens, **kw))
    else:
        out = _call(model(case, cls), *inputs(tokens, **kw))
    return out[: len(tokens)]


@functools.cache
def _on_path(case: str, cls: type, attention: AttentionConfig) -> nnx.Module:
    m = nnx.clone(model(case, cls))
    for block in m.blocks:
        block.attn.attention = attention
    return m


def logits_on_path(case: str, cls: type, attention: AttentionConfig, tokens, **kw) -> jax.Array:
    """`logits` of `model`'s weights on another attention path (an eager call)."""
    return _call(_on_path(case, cls, attention), *inputs(tokens, **kw))[: len(tokens)]


def alone(case: str, cls: type, seqs) -> list[jax.Array]:
    """Each sequence's [len, C] logits computed on its own (see the module docstring)."""
    if cls is not TransformerLM:
        return [model(case, cls)(jnp.asarray(s, jnp.int32)[None])[0] for s in seqs]
    out = logits(case, cls, np.stack([np.concatenate([s, FILLER[len(s) :]]) for s in seqs]))
    return [out[i, : len(s)] for i, s in enumerate(seqs)]
