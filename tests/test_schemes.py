"""Every registered scheme, through one shared list of cases (tests/helpers/schemes.py):
registry round trip and blockwise = dense (forward and gradients); the scheme-owned
variants; and the layering rules of the tree (what may import what, no scheme-name
branching). The model-level tests of every scheme are in tests/test_scheme_models.py.
"""

import ast
import dataclasses
import functools
import pathlib
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers.schemes import (
    CASE_IDS,
    CASES,
    SCHEME_CASES,
    bidirectional_cases,
    unlisted_schemes,
)

from posenc_jax.attention import blockwise_attention, dense_attention
from posenc_jax.rope.rectified import far_positions
from posenc_jax.schemes import (
    SCHEMES,
    Scheme,
    context_extension_names,
    list_schemes,
    make_scheme,
)

ROOT = pathlib.Path(__file__).resolve().parents[1]
VOCAB = 11


def test_every_registered_scheme_has_a_case():
    assert unlisted_schemes() == set()


@pytest.mark.parametrize("spec", CASES, ids=CASE_IDS)
def test_config_round_trip_and_hashable(spec):
    scheme = make_scheme(spec)
    assert make_scheme(scheme.to_config()) == scheme
    hash(scheme)  # usable as a static jit argument
    field = next(iter(dataclasses.fields(scheme)), None)
    if field is not None:
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(scheme, field.name, getattr(scheme, field.name))


def test_unknown_names_and_settings_list_the_valid_ones():
    with pytest.raises(ValueError, match=r"valid schemes: \['abacus', 'alibi'"):
        make_scheme("alibl")
    with pytest.raises(ValueError, match=r"unknown setting 'slope'.*valid settings"):
        make_scheme({"name": "alibi", "slope": 1})


# -- blockwise = dense --------------------------------------------------------------------


def _attention_inputs(spec, *, causal, t, s, seed=0):
    scheme = make_scheme(spec).configure(causal=causal)
    keys = jax.random.split(jax.random.PRNGKey(seed), 4)
    q = jax.random.normal(keys[0], (2, t, 4, 8))
    k = jax.random.normal(keys[1], (2, s, 2, 8))
    v = jax.random.normal(keys[2], (2, s, 2, 8))
    params = scheme.init_attention_params(keys[3], num_heads=4, head_dim=8)
    params = jax.tree.map(lambda x: 3.0 * x, params)  # learned terms large enough to matter
    states = {}
    if "token_state" in scheme.hooks:  # FoX: cumulative log forget gates of queries and keys
        gates = jax.nn.log_sigmoid(jax.random.normal(keys[3], (2, t + s, 4)) + 1.0)
        states = {"q_state": jnp.cumsum(gates[:, :t], 1), "k_state": jnp.cumsum(gates[:, t:], 1)}
    return scheme, q, k, v, params, states


BLOCKWISE = [(c, True) for c in CASE_IDS] + [(c, False) for c in bidirectional_cases()]


@pytest.mark.parametrize(
    ("case", "causal"), BLOCKWISE, ids=[f"{c}-{'causal' if x else 'bidir'}" for c, x in BLOCKWISE]
)
def test_blockwise_equals_dense_forward_and_grad(case, causal):
    """Tiles see offset positions (queries 108.., keys 100..): each tile's terms must be right."""
    scheme, q, k, v, params, states = _attention_inputs(
        SCHEME_CASES[case], causal=causal, t=37, s=45
    )
    q_pos = jnp.arange(37) + 108
    k_pos = jnp.arange(45) + 100
    key_mask = jnp.ones((2, 45), bool).at[1, :5].set(False)

    def run(fn, q, k, v, params, states):
        q, k = scheme.rotate(params, q, k, q_pos, k_pos)
        return fn(
            q,
            k,
            v,
            q_positions=q_pos,
            k_positions=k_pos,
            scheme=scheme,
            params=params,
            causal=causal,
            key_mask=key_mask,
            **states,
        )

    blockwise = functools.partial(blockwise_attention, q_block=16, k_block=8)
    if not scheme.tiles:  # CoPE: a key's position sums gates beyond its tile
        with pytest.raises(ValueError, match=r"does not tile.*implementation='dense'"):
            run(blockwise, q, k, v, params, states)
        return

    @functools.partial(jax.jit, static_argnums=0)  # one compile per path: output and grads
    def output_and_grads(fn, *args):
        out, vjp = jax.vjp(functools.partial(run, fn), *args)
        return out, vjp(jnp.cos(out))  # the gradient of sum(sin(out))

    args = (q, k, v, params, states)
    dense, g_dense = output_and_grads(dense_attention, *args)
    block, g_block = output_and_grads(blockwise, *args)
    np.testing.assert_allclose(block, dense, atol=2e-5, rtol=2e-5)
    for gd, gb in zip(jax.tree.leaves(g_dense), jax.tree.leaves(g_block), strict=True):
        np.testing.assert_allclose(gb, gd, atol=1e-4, rtol=1e-4)


# -- variants owned by the scheme ---------------------------------------------------------


def test_rope_context_extensions_follow_the_training_length():
    rope = make_scheme({"name": "rope", "base": 500.0})
    assert set(rope.context_extensions) == {
        *("linear", "ntk", "dynamic", "yarn"),
        *("rerope", "leaky_rerope", "self_extend", "dual_chunk", "streaming_llm"),
    }
    yarn = rope.extend_context("yarn", train_length=48, eval_length=192)
    assert yarn.base == 500.0
    assert dict(yarn.scaling) == {
        "rope_type": "yarn",
        "factor": 4.0,
        "original_max_position_embeddings": 48,
    }
    # No shrinking below the training length; dynamic NTK grows from factor 1 itself.
    assert rope.extend_context("linear", train_length=48, eval_length=24).scaling["factor"] == 1.0
    assert rope.extend_context("dynamic", train_length=48, eval_length=480).scaling["factor"] == 1.0
    for method in rope.context_extensions:
        variant = rope.extend_context(method, train_length=16, eval_length=64)
        variant.validate(num_heads=4, head_dim=16, d_model=64)
        assert make_scheme(variant.to_config()) == variant
    # The windowed methods: true distances within L // 2, the far ones back inside L - 1.
    for method in ("rerope", "leaky_rerope", "self_extend"):
        variant = rope.extend_context(method, train_length=64, eval_length=1024)
        assert (variant.name, variant.method, variant.window, variant.base) == (
            "windowed_rope",
            method,
            32,
            500.0,
        )
        fq, fk = far_positions(
            method, jnp.arange(1024), jnp.arange(1024), window=32, factor=variant.factor
        )
        far = np.asarray(fq)[:, None] - np.asarray(fk)[None, :]
        causal = np.tril(np.ones((1024, 1024), bool), -32)
        assert far[causal].max() <= 63 + 1e-3, method  # float32 rounding of j / k
    # Dual Chunk Attention: ChunkLlama's defaults, chunk 3L/4 - L/16 and window L/16.
    dca = rope.extend_context("dual_chunk", train_length=64, eval_length=1024)
    assert (dca.name, dca.method, dca.window, dca.local_window) == ("windowed_rope", "dual_chunk",
                                                                    44, 4)  # fmt: skip


@pytest.mark.parametrize("spec", CASES, ids=CASE_IDS)
def test_unoffered_extension_is_an_error_naming_the_valid_ones(spec):
    scheme = make_scheme(spec)
    with pytest.raises(ValueError, match=re.escape(str(list(scheme.context_extensions)))):
        scheme.extend_context("selfextend", train_length=8, eval_length=32)


def test_context_extension_names_are_the_union_over_schemes():
    union = {m for cls in SCHEMES.values() for m in cls.context_extensions}
    assert context_extension_names() == sorted(union)
    assert "yarn" in context_extension_names()


def test_assume_positions_below_checks_on_the_host_and_drops_the_run_time_check():
    learned = make_scheme({"name": "learned", "max_length": 8})
    checked = learned.assume_positions_below(8)
    assert checked.out_of_range == "clip" and checked.max_length == 8
    with pytest.raises(ValueError, match="exceed the limit of 8 positions"):
        learned.assume_positions_below(9)
    for name in list_schemes():
        scheme = make_scheme(name)
        if scheme.position_limit() is None:
            assert scheme.assume_positions_below(10**6) is scheme


# -- the layering of the tree -------------------------------------------------------------

HARNESS = "posenc_jax.harness"

PURE_MODULES = sorted(
    [p for p in (ROOT / "posenc_jax").glob("*.py") if p.name not in ("__init__.py", "attention.py")]
    + list((ROOT / "posenc_jax" / "rope").glob("*.py"))
)


def _imports(path: pathlib.Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}
    return out


@pytest.mark.parametrize("path", PURE_MODULES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_pure_modules_import_neither_flax_nor_the_scheme_layer(path):
    bad = {
        m
        for m in _imports(path)
        if m.split(".")[0] == "flax"
        or m.startswith(HARNESS)
        or m.startswith("posenc_jax.schemes")
        or m.startswith("posenc_jax.nn")
        or m.startswith("posenc_jax.attention")
    }
    assert not bad, f"{path.name} imports {sorted(bad)}"


def test_scheme_layer_imports_no_flax():
    for path in (ROOT / "posenc_jax" / "schemes").glob("*.py"):
        bad = {m for m in _imports(path) if m.split(".")[0] == "flax" or m.startswith(HARNESS)}
        assert not bad, f"{path.name} imports {sorted(bad)}"


def test_the_library_never_imports_the_harness():
    """The harness (posenc_jax.harness) sits on top: attention, nn and the rest never import it."""
    library = [p for p in (ROOT / "posenc_jax").rglob("*.py") if "harness" not in p.parts]
    found = {
        p.relative_to(ROOT).as_posix(): sorted(m for m in _imports(p) if m.startswith(HARNESS))
        for p in library
    }
    assert not {k: v for k, v in found.items() if v}


def test_importing_posenc_jax_loads_no_flax_and_no_harness():
    code = (
        "import sys, posenc_jax, posenc_jax.presets\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'flax' or 'harness' in m)\n"
        "print(bad)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == "[]", out.stdout


NAME_BRANCH = re.compile(
    r"(\.name|scheme_name)\s*(==|!=|\bin\b)\s*[\(\[\{]?['\"]("
    + "|".join(map(re.escape, sorted(SCHEMES)))
    + r")['\"]"
)
CONCRETE_CLASS = re.compile(
    r"isinstance\([^)]*\b(" + "|".join(cls.__name__ for cls in SCHEMES.values()) + r")\b"
)


def test_no_scheme_name_branching_outside_the_scheme_layer():
    """Attention, the NNX modules and the harness ask the scheme; they never test its name."""
    files = [ROOT / "posenc_jax" / "attention.py"]
    files += list((ROOT / "posenc_jax" / "nn").rglob("*.py"))
    files += list((ROOT / "posenc_jax" / "harness").rglob("*.py"))
    found = []
    for path in files:
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if NAME_BRANCH.search(line) or CONCRETE_CLASS.search(line):
                found.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()}")
    assert not found, "\n".join(found)


def test_scheme_subclasses_are_all_registered():
    assert all(issubclass(cls, Scheme) and SCHEMES[cls.name] is cls for cls in SCHEMES.values())
