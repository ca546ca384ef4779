"""RoPE context extension: golden values from Hugging Face, paper properties, config interop.

Golden values in tests/data/hf_rope_golden.json were produced once by
tools/make_hf_rope_fixtures.py with transformers' ROPE_INIT_FUNCTIONS (torch);
the properties restate the papers' definitions (Chen et al. 2023; bloc97's
NTK-aware base; Peng et al. 2023, YaRN; Llama 3.1; Ding et al. 2024, LongRoPE)
in float64 NumPy.
"""

from __future__ import annotations

import json
import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from posenc_jax.rope import (
    ROPE_TYPES,
    RopeScaling,
    RopeSettings,
    apply_rope,
    rope_frequencies,
    rope_from_hf_config,
)
from posenc_jax.rope.frequencies import ROPE_SCHEDULES

HYP = settings(max_examples=25, deadline=None)
GOLDEN = json.loads((pathlib.Path(__file__).parent / "data" / "hf_rope_golden.json").read_text())
CASES = GOLDEN["cases"]


def theta(d: int, base: float) -> np.ndarray:
    """RoFormer: theta_i = base^(-2i/d), i = 0 .. d/2 - 1, float64."""
    return base ** (-2.0 * np.arange(d // 2) / d)


# --------------------------------------------------------------------------------------------
# Golden values from Hugging Face transformers
# --------------------------------------------------------------------------------------------


def test_golden_file_covers_every_hf_type():
    assert GOLDEN["transformers_version"]
    types = {c["rope_type"] for c in CASES}
    assert types == {"default", "linear", "dynamic", "yarn", "llama3", "longrope"}
    dynamic = [c["seq_len"] for c in CASES if c["rope_type"] == "dynamic"]
    assert None in dynamic and min(s for s in dynamic if s) < 2048 < max(s for s in dynamic if s)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_matches_hf_rope_init_functions(case):
    settings_ = rope_from_hf_config(case["config"])
    inv_freq, factor = settings_.frequencies(case["seq_len"])
    want = np.asarray(case["inv_freq"], np.float64)
    assert inv_freq.dtype == jnp.float32 and inv_freq.shape == want.shape
    np.testing.assert_allclose(np.asarray(inv_freq, np.float64), want, rtol=1e-6, atol=0)
    assert factor == pytest.approx(case["attention_factor"], rel=1e-6)


TRACED = [c for c in CASES if c["seq_len"] is not None]


@pytest.mark.parametrize("case", TRACED, ids=[c["name"] for c in TRACED])
def test_traced_seq_len_matches_hf(case):
    """Dynamic NTK and LongRoPE with seq_len traced under jit: one program for all lengths."""
    settings_ = rope_from_hf_config(case["config"])
    inv_freq = jax.jit(lambda n: settings_.frequencies(n)[0])(jnp.int32(case["seq_len"]))
    np.testing.assert_allclose(
        np.asarray(inv_freq, np.float64), np.asarray(case["inv_freq"]), rtol=1e-6, atol=0
    )


def test_rope_frequencies_accepts_the_hf_dict_directly():
    case = next(c for c in CASES if c["name"] == "llama3_llama31_8b")
    config = case["config"]
    inv_freq, factor = rope_frequencies(
        config["hidden_size"] // config["num_attention_heads"],
        base=config["rope_theta"],
        scaling=config["rope_scaling"],
    )
    np.testing.assert_allclose(np.asarray(inv_freq), case["inv_freq"], rtol=1e-6)
    assert factor == 1.0


# --------------------------------------------------------------------------------------------
# Properties from the papers
# --------------------------------------------------------------------------------------------

dims = st.sampled_from([16, 32, 64, 128])
bases = st.sampled_from([10000.0, 500000.0, 1e6])
factors = st.sampled_from([2.0, 4.0, 8.0, 16.0, 40.0])


@HYP
@given(
    factor=st.sampled_from([2, 4, 8]),
    m=st.integers(0, 2**17),
    seed=st.integers(0, 2**16),
    layout=st.sampled_from(["half", "interleaved"]),
)
def test_linear_scaling_at_scaled_position_equals_default(factor, m, seed, layout):
    """Position interpolation: f'(x, m * s) = f(x, m)."""
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=(1, 2, 2, 16)), jnp.float32)
    default, _ = rope_frequencies(16)
    linear, _ = rope_frequencies(16, scaling={"rope_type": "linear", "factor": factor})
    positions = jnp.asarray([m, m + 1], jnp.int32)
    want = apply_rope(x, positions, inv_freq=default, layout=layout)
    got = apply_rope(x, positions * factor, inv_freq=linear, layout=layout)
    np.testing.assert_allclose(got, want, atol=2e-4, rtol=0)


@HYP
@given(dim=dims, base=bases, factor=factors)
def test_ntk_aware_base_change(dim, base, factor):
    """NTK-aware: base' = base * s^(d/(d-2)): theta_0 stays 1, the lowest frequency is / s."""
    inv_freq, af = rope_frequencies(dim, base=base, scaling={"type": "ntk", "factor": factor})
    want = theta(dim, base * factor ** (dim / (dim - 2)))
    np.testing.assert_allclose(np.asarray(inv_freq), want, rtol=2e-6)
    assert float(inv_freq[0]) == 1.0
    assert float(inv_freq[-1]) == pytest.approx(theta(dim, base)[-1] / factor, rel=2e-6)
    assert af == 1.0


@HYP
@given(
    dim=dims,
    base=bases,
    factor=factors,
    original=st.sampled_from([512, 2048, 4096]),
    frac=st.floats(0.0, 1.0),
    traced=st.booleans(),
)
def test_dynamic_equals_default_up_to_original_length(dim, base, factor, original, frac, traced):
    scaling = {
        "rope_type": "dynamic",
        "factor": factor,
        "original_max_position_embeddings": original,
    }
    seq_len = max(1, int(frac * original))
    if traced:
        seq_len = jnp.int32(seq_len)
    inv_freq, _ = rope_frequencies(dim, base=base, scaling=scaling, seq_len=seq_len)
    np.testing.assert_allclose(np.asarray(inv_freq), theta(dim, base), rtol=1e-6)
    at_none, _ = rope_frequencies(dim, base=base, scaling=scaling)
    np.testing.assert_allclose(np.asarray(at_none), theta(dim, base), rtol=1e-6)


@HYP
@given(dim=dims, base=bases, factor=factors, ratio=st.floats(1.0, 64.0))
def test_dynamic_above_original_length_is_ntk_at_effective_factor(dim, base, factor, ratio):
    original = 2048
    seq_len = int(ratio * original)
    scaling = {
        "rope_type": "dynamic",
        "factor": factor,
        "original_max_position_embeddings": original,
    }
    inv_freq, _ = rope_frequencies(dim, base=base, scaling=scaling, seq_len=seq_len)
    effective = factor * seq_len / original - (factor - 1)
    np.testing.assert_allclose(
        np.asarray(inv_freq), theta(dim, base * effective ** (dim / (dim - 2))), rtol=1e-6
    )


def _yarn_rotations(dim: int, base: float, original: int) -> np.ndarray:
    """YaRN: r(d) = L / lambda_d, full rotations of dim pair d over the original length."""
    return original * theta(dim, base) / (2 * math.pi)


@HYP
@given(
    dim=dims,
    base=bases,
    factor=factors,
    original=st.sampled_from([2048, 4096, 32768]),
    truncate=st.booleans(),
)
def test_yarn_keeps_high_frequencies_and_interpolates_low(dim, base, factor, original, truncate):
    scaling = {
        "rope_type": "yarn",
        "factor": factor,
        "original_max_position_embeddings": original,
        "truncate": truncate,
    }
    inv_freq, af = rope_frequencies(dim, base=base, scaling=scaling)
    ratio = np.asarray(inv_freq, np.float64) / theta(dim, base)
    r = _yarn_rotations(dim, base, original)
    fast, slow = r > 32, r < 1  # beta = 32, alpha = 1
    np.testing.assert_allclose(ratio[fast], 1.0, rtol=1e-6)
    np.testing.assert_allclose(ratio[slow], 1.0 / factor, rtol=1e-6)
    assert np.all(ratio >= 1.0 / factor * (1 - 1e-6)) and np.all(ratio <= 1.0 + 1e-6)
    assert np.all(np.diff(ratio) <= 1e-6)  # monotone ramp from extrapolation to interpolation
    assert af == pytest.approx(0.1 * math.log(factor) + 1.0, rel=1e-12)


def test_yarn_attention_factor_variants():
    base = {"rope_type": "yarn", "factor": 40.0, "original_max_position_embeddings": 4096}
    _, af = rope_frequencies(64, scaling={**base, "mscale": 1.0, "mscale_all_dim": 1.0})
    assert af == 1.0
    _, af = rope_frequencies(64, scaling={**base, "mscale": 1.0, "mscale_all_dim": 0.5})
    want = (0.1 * math.log(40) + 1) / (0.05 * math.log(40) + 1)
    assert af == pytest.approx(want, rel=1e-12)
    # As transformers: mscale alone (or a zero mscale_all_dim) falls back to 0.1 ln s + 1.
    for extra in ({"mscale": 0.707}, {"mscale_all_dim": 0.707}):
        _, af = rope_frequencies(64, scaling={**base, **extra})
        assert af == pytest.approx(0.1 * math.log(40) + 1, rel=1e-12)
    _, af = rope_frequencies(64, scaling={**base, "attention_factor": 0.75, "mscale": 2.0})
    assert af == 0.75
    _, af = rope_frequencies(64, scaling={**base, "factor": 1.0})
    assert af == 1.0


@HYP
@given(
    dim=st.sampled_from([64, 128]),
    base=bases,
    factor=factors,
    original=st.sampled_from([2048, 8192]),
    bands=st.sampled_from([(1.0, 4.0), (0.5, 2.0), (1.0, 8.0)]),
)
def test_llama3_bands(dim, base, factor, original, bands):
    low, high = bands
    scaling = {
        "rope_type": "llama3",
        "factor": factor,
        "low_freq_factor": low,
        "high_freq_factor": high,
        "original_max_position_embeddings": original,
    }
    inv_freq, af = rope_frequencies(dim, base=base, scaling=scaling)
    ratio = np.asarray(inv_freq, np.float64) / theta(dim, base)
    wavelength = 2 * math.pi / theta(dim, base)
    np.testing.assert_allclose(ratio[wavelength < original / high], 1.0, rtol=1e-6)
    np.testing.assert_allclose(ratio[wavelength > original / low], 1.0 / factor, rtol=1e-6)
    mid = (wavelength >= original / high) & (wavelength <= original / low)
    smooth = (original / wavelength[mid] - low) / (high - low)
    np.testing.assert_allclose(ratio[mid], (1 - smooth) / factor + smooth, rtol=1e-6)
    assert af == 1.0


def test_longrope_switches_tables_at_original_length():
    dim, original = 16, 4096
    short = [1.0 + 0.1 * i for i in range(dim // 2)]
    long = [2.0 + i for i in range(dim // 2)]
    scaling = {
        "rope_type": "longrope",
        "factor": 32.0,
        "original_max_position_embeddings": original,
        "short_factor": short,
        "long_factor": long,
    }
    want_af = math.sqrt(1 + math.log(32.0) / math.log(original))
    for seq_len, table in [(None, short), (1, short), (original, short), (original + 1, long)]:
        for n in [seq_len] if seq_len is None else [seq_len, jnp.int32(seq_len)]:
            inv_freq, af = rope_frequencies(dim, scaling=scaling, seq_len=n)
            np.testing.assert_allclose(np.asarray(inv_freq), theta(dim, 1e4) / table, rtol=1e-6)
            assert af == pytest.approx(want_af, rel=1e-12)
    _, af = rope_frequencies(dim, scaling={**scaling, "factor": 1.0})
    assert af == 1.0


def test_scaled_attention_factor_scales_logits():
    scaling = {"rope_type": "yarn", "factor": 16.0, "original_max_position_embeddings": 1024}
    inv_freq, af = rope_frequencies(32, scaling=scaling)
    rng = np.random.default_rng(0)
    q = jnp.asarray(rng.normal(size=(1, 3, 1, 32)), jnp.float32)
    k = jnp.asarray(rng.normal(size=(1, 3, 1, 32)), jnp.float32)
    pos = jnp.arange(3) * 1000

    def logits(factor):
        qr = apply_rope(q, pos, inv_freq=inv_freq, attention_factor=factor)
        kr = apply_rope(k, pos, inv_freq=inv_freq, attention_factor=factor)
        return jnp.einsum("btnh,bsnh->bnts", qr, kr)

    np.testing.assert_allclose(logits(af), (0.1 * math.log(16) + 1) ** 2 * logits(1.0), rtol=1e-5)


# --------------------------------------------------------------------------------------------
# Settings objects
# --------------------------------------------------------------------------------------------


def test_scaling_dict_roundtrip_and_aliases():
    d = {"type": "yarn", "factor": 4, "original_max_position_embeddings": 4096, "beta_fast": 16}
    s = RopeScaling.from_dict(d)
    assert s.rope_type == "yarn" and s.factor == 4.0 and s.beta_fast == 16.0
    assert RopeScaling.from_dict(s.to_dict()) == s
    assert RopeScaling.from_dict({"rope_type": "pi", "factor": 2}).rope_type == "linear"
    assert (
        RopeScaling.from_dict(
            {"type": "dynamic_ntk", "factor": 2, "original_max_position_embeddings": 8}
        ).rope_type
        == "dynamic"
    )
    assert RopeScaling.from_dict({"type": "default"}).rope_type == "default"
    # A RopeScaling and its dict give the same frequencies; default scaling is no scaling.
    a, _ = rope_frequencies(32, scaling=s)
    b, _ = rope_frequencies(32, scaling=d)
    np.testing.assert_array_equal(a, b)
    c, _ = rope_frequencies(32, scaling={"rope_type": "default", "rope_theta": 10000.0})
    np.testing.assert_array_equal(c, rope_frequencies(32)[0])


def test_rope_settings_scheme_config():
    s = RopeSettings(
        head_dim=64,
        base=500000.0,
        scaling={"rope_type": "linear", "factor": 2.0},
        layout="interleaved",
    )
    assert s.scaling == RopeScaling(rope_type="linear", factor=2.0)
    assert s.to_scheme_config() == {
        "name": "rope",
        "base": 500000.0,
        "rotary_fraction": 1.0,
        "layout": "interleaved",
        "scaling": {"rope_type": "linear", "factor": 2.0},
        "keep_fraction": 1.0,
    }
    np.testing.assert_allclose(np.asarray(s.frequencies()[0]), theta(64, 5e5) / 2, rtol=1e-6)


def test_scheme_registry_accepts_scaling_dicts():
    from posenc_jax import schemes

    config = RopeSettings(
        head_dim=16,
        scaling={
            "type": "longrope",
            "factor": 4.0,
            "original_max_position_embeddings": 32,
            "short_factor": [1.0] * 8,
            "long_factor": [4.0] * 8,
        },
    ).to_scheme_config()
    scheme = schemes.make_scheme(config)
    scheme.validate(num_heads=2, head_dim=16, d_model=32)
    q = jnp.ones((1, 40, 2, 16))
    qr, _ = scheme.rotate({}, q, q, jnp.arange(40), jnp.arange(40))
    inv_freq, af = rope_frequencies(16, scaling=config["scaling"], seq_len=40)
    np.testing.assert_allclose(
        qr, apply_rope(q, jnp.arange(40), inv_freq=inv_freq, attention_factor=af), rtol=1e-6
    )


# --------------------------------------------------------------------------------------------
# Hugging Face config reading
# --------------------------------------------------------------------------------------------


def test_hf_config_rope_parameters_format():
    """Newer transformers: rope_theta inside rope_parameters."""
    config = {
        "hidden_size": 1024,
        "num_attention_heads": 8,
        "max_position_embeddings": 32768,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0},
    }
    s = rope_from_hf_config(config)
    assert (s.head_dim, s.base, s.scaling, s.layout) == (128, 1e6, None, "half")
    assert s.max_position_embeddings == 32768


def test_hf_config_original_length_sources():
    scaling = {"rope_type": "yarn", "factor": 4.0}
    base = {"head_dim": 64, "max_position_embeddings": 16384}
    # Falls back to max_position_embeddings, top level wins over the dict (as transformers).
    s = rope_from_hf_config({**base, "rope_scaling": scaling})
    assert s.scaling.original_max_position_embeddings == 16384
    s = rope_from_hf_config(
        {
            **base,
            "original_max_position_embeddings": 2048,
            "rope_scaling": {**scaling, "original_max_position_embeddings": 4096},
        }
    )
    assert s.scaling.original_max_position_embeddings == 2048
    # yarn without a factor: max_position_embeddings / original.
    s = rope_from_hf_config(
        {**base, "rope_scaling": {"type": "yarn", "original_max_position_embeddings": 4096}}
    )
    assert s.scaling.factor == 4.0
    # Dynamic NTK scales against max_position_embeddings.
    s = rope_from_hf_config({**base, "rope_scaling": {"type": "dynamic", "factor": 2.0}})
    assert s.scaling.original_max_position_embeddings == 16384


def test_hf_config_partial_rotary_and_layouts():
    neox = {
        "model_type": "gpt_neox",
        "hidden_size": 6144,
        "num_attention_heads": 64,
        "rotary_pct": 0.25,
        "rotary_emb_base": 10000,
        "max_position_embeddings": 2048,
    }
    s = rope_from_hf_config(neox)
    assert (s.head_dim, s.num_rotary_dims, s.layout) == (96, 24, "half")
    gptj = {
        "model_type": "gptj",
        "n_embd": 4096,
        "n_head": 16,
        "rotary_dim": 64,
        "n_positions": 2048,
    }
    s = rope_from_hf_config(gptj)
    assert (s.head_dim, s.num_rotary_dims, s.layout, s.max_position_embeddings) == (
        256,
        64,
        "interleaved",
        2048,
    )
    ds = next(c for c in CASES if c["name"] == "yarn_deepseek_v3")["config"]
    s = rope_from_hf_config({**ds, "rope_interleave": True})
    assert (s.head_dim, s.layout) == (64, "interleaved")
    assert rope_from_hf_config(ds, layout="half").layout == "half"
    phi = {
        "model_type": "phi3",
        "hidden_size": 64,
        "num_attention_heads": 4,
        "max_position_embeddings": 8192,
        "original_max_position_embeddings": 1024,
        "rope_scaling": {"type": "su", "short_factor": [1.0] * 8, "long_factor": [2.0] * 8},
    }
    s = rope_from_hf_config(phi)
    assert s.scaling.rope_type == "longrope" and s.scaling.factor == 8.0


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({"num_attention_heads": 8}, "'hidden_size'"),
        ({"hidden_size": 512}, "'num_attention_heads'"),
        (
            {"head_dim": 64, "rope_scaling": {"type": "dynamic", "factor": 2.0}},
            "'max_position_embeddings'",
        ),
        (
            {
                "head_dim": 64,
                "rope_scaling": {
                    "type": "llama3",
                    "factor": 8.0,
                    "low_freq_factor": 1.0,
                    "high_freq_factor": 4.0,
                },
            },
            "'max_position_embeddings'",
        ),
        (
            {
                "head_dim": 64,
                "max_position_embeddings": 8,
                "rope_scaling": {"type": "yarn", "finetuned": 1},
            },
            "unknown key.*'finetuned'",
        ),
    ],
)
def test_hf_config_errors_name_the_key(config, match):
    with pytest.raises(ValueError, match=match):
        rope_from_hf_config(config)


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------

YARN = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 4096}
LLAMA3 = {
    "rope_type": "llama3",
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 8192,
}


@pytest.mark.parametrize(
    ("scaling", "match"),
    [
        ({"rope_type": "linear", "factor": 0.5}, "'factor' must be >= 1.0; got 0.5"),
        ({"rope_type": "linear"}, "needs the key 'factor'"),
        (
            {"rope_type": "dynamic", "factor": 2.0},
            "needs the key 'original_max_position_embeddings'",
        ),
        ({"rope_type": "yarn", "factor": 2.0}, "needs the key 'original_max_position_embeddings'"),
        (
            {k: v for k, v in LLAMA3.items() if k != "low_freq_factor"},
            "needs the key 'low_freq_factor'",
        ),
        ({**LLAMA3, "high_freq_factor": 1.0}, "'high_freq_factor' > 'low_freq_factor'"),
        (
            {
                "rope_type": "longrope",
                "short_factor": [1.0] * 8,
                "original_max_position_embeddings": 64,
            },
            "needs the key 'long_factor'",
        ),
        (
            {
                "rope_type": "longrope",
                "short_factor": [1.0] * 8,
                "long_factor": [1.0] * 8,
                "original_max_position_embeddings": 64,
            },
            "needs the key 'factor'",
        ),
        (
            {
                "rope_type": "longrope",
                "factor": 4.0,
                "short_factor": [1.0] * 7,
                "long_factor": [1.0] * 8,
                "original_max_position_embeddings": 64,
            },
            "'short_factor' must have R/2 = 8 entries.*got 7",
        ),
        (
            {
                "rope_type": "longrope",
                "factor": 4.0,
                "short_factor": [1.0] * 8,
                "long_factor": "1.0",
                "original_max_position_embeddings": 64,
            },
            "'long_factor' must be a list",
        ),
        ({"rope_type": "rotary9"}, r"unknown rope_type 'rotary9'.*\['default', 'linear'"),
        ({"type": "yarn", "rope_type": "linear", "factor": 2.0}, "disagree"),
        ({**YARN, "factr": 2.0}, r"unknown key\(s\) \['factr'\].*valid keys"),
        ({**YARN, "truncate": "no"}, "'truncate' must be true or false"),
        ({**YARN, "beta_fast": -1.0}, "'beta_fast' must be a finite number > 0"),
        ({**YARN, "original_max_position_embeddings": 0}, "'original_max_position_embeddings'"),
        ({**YARN, "rope_theta": 500000.0}, r"scaling\['rope_theta'\]=500000.0 disagrees"),
        ({**YARN, "partial_rotary_factor": 0.5}, "disagrees with rotary_fraction=1.0"),
        (["linear", 2.0], "must be a mapping"),
    ],
)
def test_invalid_scaling(scaling, match):
    with pytest.raises(ValueError, match=match):
        rope_frequencies(16, scaling=scaling)


def test_ntk_and_dynamic_need_rotary_dim_above_two():
    for scaling in (
        {"type": "ntk", "factor": 2.0},
        {"type": "dynamic", "factor": 2.0, "original_max_position_embeddings": 8},
    ):
        with pytest.raises(ValueError, match="rotary dim > 2"):
            rope_frequencies(2, scaling=scaling)


def test_rope_types_listed():
    assert set(ROPE_TYPES) == {"default", "linear", "ntk", "dynamic", "yarn", "llama3", "longrope"}


# The keys each rope type requires, with small valid values.
MINIMAL_SCALING = {
    "default": {},
    "linear": {"factor": 2.0},
    "ntk": {"factor": 2.0},
    "dynamic": {"factor": 2.0, "original_max_position_embeddings": 32},
    "yarn": {"factor": 2.0, "original_max_position_embeddings": 32},
    "llama3": {
        "factor": 2.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 32,
    },
    "longrope": {
        "factor": 2.0,
        "short_factor": [1.0] * 8,
        "long_factor": [2.0] * 8,
        "original_max_position_embeddings": 32,
    },
}


@pytest.mark.parametrize("rope_type", ROPE_TYPES)
def test_every_rope_type_has_a_schedule(rope_type):
    assert set(ROPE_SCHEDULES) == set(ROPE_TYPES) == set(MINIMAL_SCALING)
    scaling = {"rope_type": rope_type, **MINIMAL_SCALING[rope_type]}
    for seq_len in (None, 16, 64, jnp.int32(64)):
        inv_freq, factor = rope_frequencies(16, scaling=scaling, seq_len=seq_len)
        assert inv_freq.shape == (8,) and inv_freq.dtype == jnp.float32
        assert isinstance(factor, float) and factor > 0
        assert np.all(np.isfinite(np.asarray(inv_freq))) and np.all(np.asarray(inv_freq) > 0)


@pytest.mark.parametrize(
    "call",
    [
        lambda: rope_frequencies(16, scaling={"rope_type": "rotary9"}),
        lambda: RopeScaling(rope_type="rotary9"),
        lambda: RopeScaling.from_dict({"type": "rotary9"}),
        lambda: rope_from_hf_config({"head_dim": 16, "rope_scaling": {"type": "rotary9"}}),
    ],
)
def test_unknown_rope_type_lists_the_valid_types(call):
    with pytest.raises(ValueError, match="unknown rope_type 'rotary9'") as info:
        call()
    assert str(list(ROPE_TYPES)) in str(info.value)


# --------------------------------------------------------------------------------------------
# Dynamic methods pick their frequencies per row
# --------------------------------------------------------------------------------------------

PER_ROW_SCALING = {
    "dynamic": {"rope_type": "dynamic", "factor": 4.0, "original_max_position_embeddings": 8},
    "longrope": {
        "rope_type": "longrope",
        "factor": 4.0,
        "original_max_position_embeddings": 8,
        "short_factor": [1.0 + 0.05 * i for i in range(8)],
        "long_factor": [1.0 + 0.5 * i for i in range(8)],
    },
}


def _hf_inv_freq(scaling, dim, base, seq_len):
    """float64 transcription of transformers' ``_compute_dynamic_ntk_parameters`` and
    ``_compute_longrope_parameters`` at ``seq_len`` (= max position + 1, as
    ``dynamic_rope_update`` computes it), returning (inv_freq [dim/2], attention_factor).

    Dynamic: seq_len below L counts as L; base' = base * (factor * seq_len / L -
    (factor - 1))^(dim / (dim - 2)). LongRoPE: long_factor when seq_len > L, else
    short_factor; attention factor sqrt(1 + ln(factor) / ln(L)).
    """
    length = scaling["original_max_position_embeddings"]
    factor = scaling["factor"]
    exponents = np.arange(0, dim, 2, dtype=np.float64) / dim
    if scaling["rope_type"] == "dynamic":
        seq_len = seq_len if seq_len > length else length
        base = base * ((factor * seq_len / length) - (factor - 1)) ** (dim / (dim - 2))
        return 1.0 / base**exponents, 1.0
    ext = scaling["long_factor"] if seq_len > length else scaling["short_factor"]
    attention_factor = math.sqrt(1 + math.log(factor) / math.log(length))
    return 1.0 / (np.asarray(ext, np.float64) * base**exponents), attention_factor


def _hf_scores(q, k, positions, scaling, dim, base):
    """[T, N, H] q, k of one row, half layout -> [N, T, T] float64 scores."""
    inv_freq, af = _hf_inv_freq(scaling, dim, base, int(np.max(positions)) + 1)
    angle = np.asarray(positions, np.float64)[:, None] * inv_freq[None, :]  # [T, H/2]
    cos, sin = np.cos(angle)[:, None, :] * af, np.sin(angle)[:, None, :] * af

    def rot(x):
        a, b = x[..., : dim // 2], x[..., dim // 2 :]
        return np.concatenate([a * cos - b * sin, b * cos + a * sin], axis=-1)

    q, k = np.asarray(q, np.float64), np.asarray(k, np.float64)
    return np.einsum("tnh,snh->nts", rot(q), rot(k))


@pytest.mark.parametrize("rope_type", sorted(PER_ROW_SCALING))
def test_dynamic_frequencies_follow_each_rows_own_length(rope_type):
    """A 3-token row scores the same alone or left-padded beside a 20-token row (L = 8)."""
    from posenc_jax.schemes import make_scheme

    scaling = PER_ROW_SCALING[rope_type]
    scheme = make_scheme({"name": "rope", "scaling": scaling})
    width, short, dim = 20, 3, 16
    rng = np.random.default_rng(0)
    q = jnp.asarray(rng.normal(size=(2, width, 2, dim)), jnp.float32)
    k = jnp.asarray(rng.normal(size=(2, width, 2, dim)), jnp.float32)
    # Left padding as positions_from_padding writes it: 0 on the padding, 0 .. 2 after.
    positions = np.stack([np.maximum(np.arange(width) - (width - short), 0), np.arange(width)])
    rotate = jax.jit(lambda q, k, p: scheme.rotate({}, q, k, p, p))
    qb, kb = rotate(q, k, jnp.asarray(positions))
    real = slice(width - short, width)
    qa, ka = rotate(q[:1, real], k[:1, real], jnp.arange(short)[None])
    batched = np.einsum("tnh,snh->nts", qb[0, real], kb[0, real])
    alone = np.einsum("tnh,snh->nts", qa[0], ka[0])
    np.testing.assert_allclose(batched, alone, rtol=1e-6, atol=1e-6)
    # Both rows against Hugging Face's definition at that row's own length.
    for row, sl in ((0, real), (1, slice(0, width))):
        got = np.einsum("tnh,snh->nts", qb[row, sl], kb[row, sl])
        want = _hf_scores(q[row, sl], k[row, sl], positions[row, sl], scaling, dim, 1e4)
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("p, factor", [(0.25, 1.0), (0.5, 2.0), (1.0, 1.0)])
def test_hf_proportional_rope_is_p_rope(p, factor):
    """Gemma 4's ``rope_type="proportional"``: a float64 transcription of transformers'
    ``_compute_proportional_rope_parameters`` (modeling_rope_utils.py, transformers 5.24):
    rope_angles = int(p * H // 2) frequencies base^(-2i/H), then H/2 - rope_angles zeros,
    all divided by factor; attention factor 1."""
    head_dim, base = 32, 1e6
    params = {"rope_type": "proportional", "partial_rotary_factor": p, "rope_theta": base}
    if factor != 1.0:
        params["factor"] = factor
    config = {"model_type": "gemma4_text", "head_dim": head_dim, "rope_parameters": params}
    settings = rope_from_hf_config(config)
    angles = int(p * head_dim // 2)
    want = 1.0 / base ** (np.arange(0, 2 * angles, 2, dtype=np.float64) / head_dim)
    want = np.concatenate([want, np.zeros(head_dim // 2 - angles)]) / factor
    inv_freq, attention_factor = settings.frequencies()
    np.testing.assert_allclose(np.asarray(inv_freq, np.float64), want, rtol=1e-6)
    assert attention_factor == 1.0
    from posenc_jax.schemes import make_scheme

    scheme = make_scheme(settings.to_scheme_config())
    assert scheme.keep_fraction == p and scheme.rotary_fraction == 1.0
