"""Hugging Face checkpoints loaded with `posenc_jax.nn.from_hf` give transformers' logits.

The directories under tests/data/hf are tiny random-weight models written once by
tools/make_hf_fixtures.py with transformers and torch (their versions are in
tests/data/hf/fixtures.json); each holds config.json, the safetensors weights and
expected.npz: transformers' float32 logits for two 16-token rows (and 48 tokens for
Llama and Phi-3, past Phi-3's original context, where LongRoPE switches factors) and
its greedy generation of 10 tokens with the KV cache. Neither torch nor
transformers is imported here.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from posenc_jax.nn import Architecture, TransformerLM, from_hf, generate, hf_model_settings

DATA = Path(__file__).resolve().parent / "data" / "hf"
CASES = sorted(p.name for p in DATA.iterdir() if p.is_dir() and (p / "expected.npz").is_file())
SUPPORTED = CASES


@nnx.jit
def _forward(model, tokens):
    return model(tokens)  # one compiled program per model (faster than op-by-op here)


def _expected(case: str) -> dict[str, np.ndarray]:
    with np.load(DATA / case / "expected.npz") as data:
        return dict(data)


@pytest.fixture(scope="module")
def models() -> dict[str, TransformerLM]:
    return {case: from_hf(DATA / case, dtype=jnp.float32) for case in SUPPORTED}


def test_every_family_has_a_fixture():
    assert set(SUPPORTED) >= {
        "llama", "mistral", "qwen2", "qwen3", "phi3", "gpt_neox", "gptj", "gpt2", "bloom",
        "gemma2", "gemma3",
    }  # fmt: skip


@pytest.mark.parametrize("case", SUPPORTED)
def test_logits_equal_transformers(models, case):
    model, e = models[case], _expected(case)
    logits = np.asarray(_forward(model, jnp.asarray(e["tokens"])))
    np.testing.assert_allclose(logits, e["logits"], atol=1e-4, rtol=0)
    if "tokens_long" in e:  # Llama 3 scaling and Phi-3 LongRoPE past the original length
        long = np.asarray(_forward(model, jnp.asarray(e["tokens_long"])))
        np.testing.assert_allclose(long, e["logits_long"], atol=1e-4, rtol=0)


# Decoding with the KV cache: one family per positional kind (RoPE with Llama 3 scaling
# and GQA, Gemma 2's per-layer windows and soft-capping, ALiBi, learned positions); the cache
# path is the same code for every architecture option, and KV-cache decoding equals
# the full forward for every scheme in tests/test_scheme_models.py.
@pytest.mark.parametrize("case", ["llama", "gemma2", "bloom", "gpt2"])
def test_greedy_generation_equals_transformers_token_for_token(models, case):
    e = _expected(case)
    new = e["generated"].shape[1] - e["prompt"].shape[1]
    out = generate(models[case], jnp.asarray(e["prompt"]), max_new_tokens=new)
    np.testing.assert_array_equal(np.asarray(out), e["generated"])


def _config(case: str) -> dict:
    return json.loads((DATA / case / "config.json").read_text())


def test_rope_settings_are_read_from_each_config(models):
    llama = models["llama"].scheme
    params = _config("llama")["rope_parameters"]
    assert llama.name == "rope" and llama.base == params["rope_theta"]
    assert llama.scaling["rope_type"] == "llama3" and llama.scaling["factor"] == params["factor"]
    phi = models["phi3"].scheme.scaling
    phi_params = _config("phi3")["rope_parameters"]
    assert phi["rope_type"] == "longrope"
    assert list(phi["long_factor"]) == phi_params["long_factor"]
    assert list(phi["short_factor"]) == phi_params["short_factor"]
    neox = models["gpt_neox"].scheme
    assert neox.rotary_fraction == _config("gpt_neox")["rope_parameters"]["partial_rotary_factor"]
    gptj = models["gptj"].scheme
    cfg = _config("gptj")
    assert gptj.layout == "interleaved"
    assert gptj.rotary_fraction == cfg["rotary_dim"] / (cfg["n_embd"] // cfg["n_head"])
    assert models["bloom"].scheme.name == "alibi" and models["gpt2"].scheme.name == "learned"
    assert [b.attn.sliding_window for b in models["mistral"].blocks] == [6, 6]
    gemma = _config("gemma3")
    layers = [b.attn for b in models["gemma3"].blocks]
    assert [a.sliding_window for a in layers] == [
        gemma["sliding_window"] if t == "sliding_attention" else None for t in gemma["layer_types"]
    ]
    bases = {t: gemma["rope_parameters"][t]["rope_theta"] for t in gemma["layer_types"]}
    assert [a.scheme.base for a in layers] == [bases[t] for t in gemma["layer_types"]]


def test_bfloat16_weights_stay_bfloat16():
    """qwen3's weights are stored in bfloat16: loaded as stored, every parameter is
    bfloat16 (no float32 copy) and the logits are within bfloat16 rounding of the
    float32 reference computed from the same weights."""
    model = from_hf(DATA / "qwen3")
    dtypes = {x.dtype for x in jax.tree.leaves(model) if isinstance(x, jax.Array) and x.ndim}
    assert dtypes == {jnp.dtype(jnp.bfloat16)}
    e = _expected("qwen3")
    logits = np.asarray(_forward(model, jnp.asarray(e["tokens"])))
    scale = np.abs(e["logits"]).max()
    assert np.abs(logits - e["logits"]).max() < 0.05 * scale


def test_bfloat16_weights_read_as_float32_are_the_same_numbers():
    """dtype=float32 converts each stored bfloat16 tensor exactly (no rounding on the way)."""
    stored = jax.tree.leaves(nnx.state(from_hf(DATA / "qwen3"), nnx.Param))
    wide = jax.tree.leaves(nnx.state(from_hf(DATA / "qwen3", dtype=jnp.float32), nnx.Param))
    for a, b in zip(stored, wide, strict=True):
        assert b.dtype == jnp.float32
        np.testing.assert_array_equal(np.asarray(a, np.float32), np.asarray(b))


def test_checkpoint_quirks_that_load(tmp_path):
    """Buffers some checkpoints carry (GPT-NeoX's attention.bias mask) are skipped, and a
    tied checkpoint that also stores lm_head.weight loads; the logits do not change."""
    from safetensors.numpy import load_file, save_file

    e = _expected("gpt_neox")
    d = _copy("gpt_neox", tmp_path)
    tensors = load_file(d / "model.safetensors")
    tensors["gpt_neox.layers.0.attention.bias"] = np.tril(np.ones((1, 1, 8, 8), bool))
    save_file(tensors, d / "model.safetensors")
    logits = _forward(from_hf(d, dtype=jnp.float32), jnp.asarray(e["tokens"]))
    np.testing.assert_allclose(np.asarray(logits), e["logits"], atol=1e-4, rtol=0)
    d = _copy("gpt2", tmp_path / "tied")
    tensors = load_file(d / "model.safetensors")
    tensors["lm_head.weight"] = tensors["transformer.wte.weight"]
    save_file(tensors, d / "model.safetensors")
    from_hf(d)


def test_settings_name_the_family_options():
    s = hf_model_settings(_config("gpt_neox"))
    assert s["architecture"].residual == "parallel" and s["norm"] == "layernorm"
    assert hf_model_settings(_config("gptj"))["architecture"].residual == "parallel_shared_norm"
    gemma = hf_model_settings(_config("gemma3"))["architecture"]
    assert (
        gemma.post_norms
        and gemma.qk_norm
        and gemma.embed_scale == pytest.approx(_config("gemma3")["hidden_size"] ** 0.5)
    )
    assert isinstance(gemma, Architecture)
    # Qwen2 with use_sliding_window and no layer_types: transformers slides the layers
    # from max_window_layers on (configuration_qwen2.py)
    qwen = _config("qwen2") | {"use_sliding_window": True, "max_window_layers": 1}
    qwen = qwen | {"sliding_window": 8, "layer_types": None}
    pattern = hf_model_settings(qwen)["layer_pattern"]
    assert [layer.get("sliding_window") for layer in pattern] == [None, 8]


def _copy(case: str, tmp_path):
    return shutil.copytree(DATA / case, tmp_path / case)


def test_bad_directories_name_what_is_missing(tmp_path):
    with pytest.raises(ValueError, match=r"no directory .*nothing is downloaded"):
        from_hf(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"has no config\.json"):
        from_hf(tmp_path / "empty")
    d = _copy("gpt2", tmp_path)
    (d / "model.safetensors").unlink()
    with pytest.raises(ValueError, match=r"no \*\.safetensors weights"):
        from_hf(d)


def test_unsupported_model_type_or_option_names_the_choices(tmp_path):
    d = _copy("gpt2", tmp_path / "falcon")
    (d / "config.json").write_text(json.dumps(_config("gpt2") | {"model_type": "falcon"}))
    with pytest.raises(ValueError, match="model_type 'falcon' is not supported; supported: "):
        from_hf(d)
    d = _copy("gpt2", tmp_path)
    cfg = _config("gpt2") | {"scale_attn_by_inverse_layer_idx": True}
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="scale_attn_by_inverse_layer_idx"):
        from_hf(d)


def test_shards_that_do_not_match_the_config(tmp_path):
    d = _copy("mistral", tmp_path)
    shard = sorted(d.glob("model-*.safetensors"))[-1]
    shard.unlink()
    with pytest.raises(ValueError, match=f"lists shard.*{shard.name}"):
        from_hf(d)
    d = _copy("gpt2", tmp_path / "wide")
    (d / "config.json").write_text(json.dumps(_config("gpt2") | {"n_inner": 24}))
    with pytest.raises(ValueError, match=r"gives shape .* config\.json implies"):
        from_hf(d)
    d = _copy("gpt2", tmp_path / "shallow")
    (d / "config.json").write_text(json.dumps(_config("gpt2") | {"n_layer": 1}))
    with pytest.raises(
        ValueError, match=r"tensors this gpt2 model does not use: \['transformer.h.1"
    ):
        from_hf(d)
    d = _copy("mistral", tmp_path / "no_index")  # shards without their index, overlapping
    (d / "model.safetensors.index.json").unlink()
    first = sorted(d.glob("model-*.safetensors"))[0]
    shutil.copy(first, d / "model-extra.safetensors")
    with pytest.raises(ValueError, match=r"are in both .* which is meant"):
        from_hf(d)
    d = _copy("gpt2", tmp_path / "multimodal")
    (d / "config.json").write_text(
        json.dumps({"model_type": "gemma3", "text_config": {"model_type": "gemma3_text"}})
    )
    with pytest.raises(ValueError, match="multimodal checkpoint"):
        from_hf(d)


# --- Experiments on a pretrained model (model.pretrained): evaluation only -------------


def _pretrained_config(**over):
    from posenc_jax.harness.config import config_from_dict

    cfg = {
        "name": "pretrained_qwen2",
        "model": {"pretrained": str(DATA / "qwen2")},
        "tasks": [
            {"name": "lm", "max_bytes": 60_000},
            {"name": "passkey_text", "eval_lengths": [320], "depth": 0.5},
        ],
        "eval": {
            "lengths": [32, 128],  # the model's context is 64
            "batch_size": 2,
            "num_batches": 1,
            "context_extensions": ["yarn"],
            "blockwise_threshold": 100,  # 128 tokens run blockwise, 32 dense
            "block_size": 32,
            "attention_maps": 0,
        },
    }
    for key, value in over.items():
        cfg[key] = {**cfg[key], **value} if key == "eval" else value
    return config_from_dict(cfg)


def test_pretrained_length_sweep_equals_a_direct_evaluation(tmp_path):
    """The harness's perplexity rows for a loaded checkpoint equal exp(mean NLL) of the
    same validation windows computed here from from_hf's logits, dense at 32 tokens and
    blockwise at 128; the YaRN row equals the model at its own context (factor 1)."""
    from posenc_jax.harness.runner import run
    from posenc_jax.harness.tasks import get_task

    records = run(_pretrained_config(), out_dir=tmp_path / "out", progress=False, verbose=False)
    rows = {(r["scheme"], r["eval_length"]): r for r in records if r["task"] == "lm"}
    assert set(rows) == {("qwen2", 32), ("qwen2", 128), ("qwen2+yarn", 32), ("qwen2+yarn", 128)}
    passkey = [r for r in records if r["task"] == "passkey_text"]
    assert {(r["scheme"], r["eval_length"]) for r in passkey} == {
        ("qwen2", 320),
        ("qwen2+yarn", 320),
    }
    assert all(r["metric"] == "exact_match" and 0 <= r["exact_match"] <= 1 for r in passkey)
    assert rows["qwen2", 32]["train_lengths_from"] == "pretrained context"
    assert rows["qwen2", 128]["train_length"] == _config("qwen2")["max_position_embeddings"]
    task = get_task("lm", max_bytes=60_000, tokenizer=str(DATA / "qwen2"))
    model = from_hf(DATA / "qwen2", dtype=jnp.float32)
    for length in (32, 128):
        (batch,) = task.eval_batches(length, 2, 1)
        logits = np.asarray(_forward(model, jnp.asarray(batch.tokens)), np.float64)
        logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
        nll = -np.take_along_axis(logp, batch.targets[..., None], -1).mean()
        assert rows["qwen2", length]["perplexity"] == pytest.approx(np.exp(nll), rel=1e-4)
    assert rows["qwen2+yarn", 32]["perplexity"] == pytest.approx(rows["qwen2", 32]["perplexity"])
    assert rows["qwen2+yarn", 128]["perplexity"] != pytest.approx(
        rows["qwen2", 128]["perplexity"], rel=1e-3
    )
    assert "qwen2+yarn" in (tmp_path / "out" / "results.md").read_text()


def test_pretrained_configs_that_cannot_run_name_the_key():
    from posenc_jax.harness.config import ConfigError
    from posenc_jax.harness.plan import plan

    with pytest.raises(ConfigError, match="remove schemes"):
        _pretrained_config(schemes=["rope"])
    with pytest.raises(ConfigError, match="one set of weights: seeds"):
        _pretrained_config(seeds=[0, 1])
    with pytest.raises(ConfigError, match=r"tasks for it are \['lm', 'passkey_text'\], not 'copy'"):
        plan(_pretrained_config(tasks=["copy"]))
    same_vocab = {"name": "lm", "max_bytes": 60_000, "tokenizer": str(DATA / "qwen2")}
    llama = _pretrained_config(model={"pretrained": str(DATA / "llama")}, tasks=[same_vocab])
    with pytest.raises(ConfigError, match=r"own scaling \(llama3\), which yarn would replace"):
        plan(llama)
    gemma = {"pretrained": str(DATA / "gemma3")}
    runs = plan(
        _pretrained_config(
            model=gemma,
            tasks=[same_vocab],
            eval={"lengths": [32], "context_extensions": ["rerope"]},
        )
    )  # Gemma 3's global layers take the model's RoPE, so the extension reaches them
    assert runs[0].scheme.name == "rope" and runs[0].scheme.scaling["rope_type"] == "linear"
    with pytest.raises(ConfigError, match=r"own scaling \(linear\), which yarn would replace"):
        plan(_pretrained_config(model=gemma, tasks=[same_vocab]))
    with pytest.raises(ConfigError, match=r"train\.learning_rate must not be a sweep"):
        _pretrained_config(train={"learning_rate": [1e-3, 3e-4]})
    with pytest.raises(ConfigError, match=r"remove model\.num_layers"):
        _pretrained_config(model={"pretrained": str(DATA / "qwen2"), "num_layers": 4})
    short = {"name": "lm", "max_bytes": 3_000}
    with pytest.raises(ConfigError, match=r"holds \d+ windows of length 128, fewer than"):
        plan(_pretrained_config(tasks=[short]))


def test_text_passkey_follows_the_reference_prompt():
    """The prompt of LongLoRA's passkey_retrivial.py (generate_prompt_landmark): task
    description, filler, the information line at the given depth, filler, question; the
    scored targets are the key's tokens right after the question, within the length."""
    from tokenizers import Tokenizer

    from posenc_jax.harness.tasks import get_task
    from posenc_jax.harness.tasks.text_passkey import DESCRIPTION, FILLER, QUESTION

    tok = Tokenizer.from_file(str(DATA / "qwen2" / "tokenizer.json"))
    vocab = {i: t for t, i in tok.get_vocab().items()}

    def text(ids):
        return "".join(vocab[int(i)] for i in ids)

    for depth in (0.0, 0.5, 1.0):
        task = get_task("passkey_text", tokenizer=str(DATA / "qwen2"), depth=depth)
        batch = task.sample_batch(np.random.default_rng(1), 2, 400)
        assert batch.tokens.shape == (2, 400)
        for b in range(2):
            mask = batch.loss_mask[b]
            end = int(np.flatnonzero(mask)[-1]) + 1  # the last scored position
            prompt = text(batch.tokens[b, : np.flatnonzero(mask)[0] + 1])
            key = text(batch.targets[b, mask]).strip()
            assert 1 <= int(key) <= 50000 and end <= 400
            lines = prompt.split("\n")
            assert lines[0] == DESCRIPTION and lines[-1] == QUESTION
            assert lines[2] == f"The pass key is {key}. Remember it. {key} is the pass key."
            prefix, suffix = len(lines[1]), len(lines[3])
            assert (FILLER + " " + FILLER)[: max(prefix, suffix)].startswith(lines[1][:50])
            assert prefix == round(depth * (prefix + suffix))
    with pytest.raises(ValueError, match="depth must be None or a fraction"):
        get_task("passkey_text", tokenizer=str(DATA / "qwen2"), depth=2)
    with pytest.raises(ValueError, match="cannot hold the prompt and its answer"):
        get_task("passkey_text", tokenizer=str(DATA / "qwen2")).sample_batch(
            np.random.default_rng(0), 1, 100
        )


def test_loading_onto_a_mesh_shards_the_parameters_and_keeps_the_logits():
    """from_hf(mesh=...) on 4 simulated CPU devices: each weight's largest axis that
    divides by 4 is split over the devices, and the logits are transformers' again."""
    import os
    import subprocess
    import sys

    code = """
import numpy as np, jax, jax.numpy as jnp
from posenc_jax.nn import from_hf
mesh = jax.sharding.Mesh(np.array(jax.devices()), ("model",))  # Auto axes
model = from_hf("tests/data/hf/llama", dtype=jnp.float32, mesh=mesh)
kernel = model.blocks[0].mlp.mlp_gate.kernel.get_value()  # [32, 64]: 64 splits
assert kernel.sharding.spec == jax.sharding.PartitionSpec(None, ("model",)), kernel.sharding
assert len(kernel.addressable_shards) == 4 and kernel.addressable_shards[0].data.shape == (32, 16)
e = np.load("tests/data/hf/llama/expected.npz")
err = np.abs(np.asarray(jax.jit(lambda t: model(t))(jnp.asarray(e["tokens"]))) - e["logits"]).max()
assert err < 1e-4, err
print("ok")
"""
    env = dict(os.environ)
    flags = env.get("XLA_FLAGS", "").replace("--xla_force_host_platform_device_count=8", "")
    env["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count=4".strip()
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-2000:]
