"""Model presets: every entry builds, RoPE presets reproduce Hugging Face golden values."""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib

import jax.numpy as jnp
import numpy as np
import pytest

from posenc_jax.presets import (
    PRESETS,
    Preset,
    get_preset,
    list_presets,
    preset_rope_settings,
    presets_table_markdown,
)

GOLDEN = {
    c["name"]: c
    for c in json.loads(
        (pathlib.Path(__file__).parent / "data" / "hf_rope_golden.json").read_text()
    )["cases"]
}
REQUIRED = [
    "bert", "gpt2", "t5", "transformer-xl", "xlnet", "deberta", "deberta-v2", "deberta-v3",
    "tupe", "gpt-j", "gpt-neox", "llama-2", "llama-3.1", "mistral", "qwen2", "falcon", "phi-3",
    "deepseek-v2", "deepseek-v3", "bloom", "mpt", "baichuan2-13b",
]  # fmt: skip
ROPE = [name for name, p in PRESETS.items() if p.encoding == "rope"]


def test_required_families_present():
    assert set(REQUIRED) <= set(list_presets())
    assert list_presets() == list(PRESETS)
    for preset in PRESETS.values():
        assert isinstance(preset, Preset) and preset.source and preset.description


@pytest.mark.parametrize("name", ROPE)
def test_rope_preset_frequencies(name):
    preset = get_preset(name)
    settings = preset.rope_settings()
    assert settings.max_position_embeddings == preset.max_position_embeddings
    for seq_len in (None, 1, preset.max_position_embeddings, jnp.int32(2**20)):
        inv_freq, factor = settings.frequencies(seq_len)
        values = np.asarray(inv_freq)
        assert values.shape == (settings.num_rotary_dims // 2,)
        assert np.all(np.isfinite(values)) and np.all(values > 0)
        assert np.all(np.diff(values) < 0)  # wavelengths grow with the pair index
        assert math.isfinite(factor) and factor > 0


@pytest.mark.parametrize(
    ("preset", "case"),
    [
        ("llama-3.1", "llama3_llama31_8b"),
        ("phi-3", "longrope_phi3_mini_128k@4096"),
        ("phi-3", "longrope_phi3_mini_128k@131072"),
        ("deepseek-v3", "yarn_deepseek_v3"),
    ],
)
def test_preset_equals_hf_golden(preset, case):
    golden = GOLDEN[case]
    inv_freq, factor = preset_rope_settings(preset).frequencies(golden["seq_len"])
    np.testing.assert_allclose(np.asarray(inv_freq, np.float64), golden["inv_freq"], rtol=1e-6)
    assert factor == pytest.approx(golden["attention_factor"], rel=1e-6)


def test_published_settings():
    assert get_preset("bert").scheme_config() == {"name": "learned", "max_length": 512}
    assert get_preset("gpt2").scheme_config() == {"name": "learned", "max_length": 1024}
    assert get_preset("t5").scheme_config() == {
        "name": "t5",
        "num_buckets": 32,
        "max_distance": 128,
    }
    gptj = preset_rope_settings("gpt-j")
    assert (gptj.num_rotary_dims, gptj.head_dim, gptj.layout) == (64, 256, "interleaved")
    neox = preset_rope_settings("gpt-neox")
    assert (neox.rotary_fraction, neox.layout) == (0.25, "half")
    assert preset_rope_settings("llama-2").base == 10000.0
    assert get_preset("llama-2").max_position_embeddings == 4096
    assert preset_rope_settings("mistral").base == 1e6
    assert preset_rope_settings("qwen2").base == 1e6
    for name in ("deepseek-v2", "deepseek-v3"):
        s = preset_rope_settings(name)
        assert (s.head_dim, s.scaling.factor, s.scaling.original_max_position_embeddings) == (
            64,
            40.0,
            4096,
        )
        assert s.frequencies()[1] == 1.0  # mscale == mscale_all_dim
    for name in ("bloom", "mpt", "baichuan2-13b"):
        assert get_preset(name).scheme_config() == {"name": "alibi"}


def test_classic_relative_presets_use_their_own_schemes():
    """Transformer-XL and XLNet: the XL scheme; DeBERTa: v1 clipped, v2/v3 log buckets; TUPE-R."""
    assert get_preset("transformer-xl").scheme_config() == {"name": "xl", "clamp_len": 1000}
    assert get_preset("xlnet").scheme_config() == {"name": "xl"}
    assert get_preset("deberta").scheme_config() == {
        "name": "deberta",
        "position_buckets": None,
        "max_relative_positions": 512,
    }
    for name in ("deberta-v2", "deberta-v3"):
        preset = get_preset(name)
        assert preset.scheme_config() == {
            "name": "deberta",
            "position_buckets": 256,
            "max_relative_positions": 512,
        }
        assert preset.max_position_embeddings == 512
    tupe = get_preset("tupe").scheme_config()
    assert (tupe["name"], tupe["max_length"], tupe["relative"]) == ("tupe", 512, True)
    assert (tupe["num_buckets"], tupe["max_distance"]) == (32, 128)


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_builds_in_the_scheme_registry(name):
    from posenc_jax import schemes

    preset = get_preset(name)
    scheme = schemes.make_scheme(preset.scheme_config())
    assert scheme.name == preset.encoding
    if preset.head_dim is not None:
        scheme.validate(num_heads=2, head_dim=preset.head_dim, d_model=2 * preset.head_dim)
    # The read-only mapping works as well as the plain copy (tuples for lists).
    assert hash(schemes.make_scheme(preset.scheme)) == hash(scheme)


def test_presets_are_read_only_and_json_ready():
    preset = get_preset("phi-3")
    with pytest.raises(TypeError):
        preset.scheme["base"] = 1.0  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        preset.name = "x"  # type: ignore[misc]
    config = preset.scheme_config()
    config["scaling"]["short_factor"][0] = 99.0  # a copy: the preset is unchanged
    assert preset.scheme["scaling"]["short_factor"][0] == 1.05
    assert json.loads(json.dumps(get_preset("phi-3").scheme_config()))["name"] == "rope"
    assert hash(preset) == hash(get_preset("phi-3"))


def test_lookup_errors_list_valid_names():
    assert get_preset("Llama_3.1") is PRESETS["llama-3.1"]
    with pytest.raises(ValueError, match=r"unknown preset 'gpt-5'.*\['bert', 'gpt2'"):
        get_preset("gpt-5")
    with pytest.raises(ValueError, match=r"'bloom' uses 'alibi', not rope.*'llama-3.1'"):
        preset_rope_settings("bloom")


def test_markdown_table():
    lines = presets_table_markdown().splitlines()
    assert lines[:2] == ["| model | encoding | settings |", "|---|---|---|"]
    assert len(lines) == 2 + len(PRESETS)
    rows = {line.split(" | ")[0].strip("| "): line for line in lines[2:]}
    assert set(rows) == set(PRESETS)
    assert "llama3 scaling" in rows["llama-3.1"] and "factor 8" in rows["llama-3.1"]
    assert "rotary 64/256" in rows["gpt-j"] and "interleaved" in rows["gpt-j"]
    assert rows["bloom"].split(" | ")[1] == "alibi"
