"""Writes tests/data/hf/: tiny random-weight Hugging Face checkpoints and their outputs.

Run once, in a separate environment that has transformers and torch (the
project itself never imports them):

    python -m venv /tmp/hfref
    /tmp/hfref/bin/pip install transformers torch numpy
    /tmp/hfref/bin/python tools/make_hf_fixtures.py

Each case builds one small causal LM from its config class (vocabulary 96,
hidden 32, two layers unless noted) with eager attention, draws every weight
again from a seeded normal distribution (the library's own initializer is too
small for tiny models: its logits come out near-uniform), and saves it with
``save_pretrained(..., safe_serialization=True)`` into ``tests/data/hf/<case>/``
(``config.json`` plus ``model.safetensors``, or the sharded index and shards
for the sharded case; ``generation_config.json`` is removed). Next to it
``expected.npz`` holds:

- ``tokens`` int32 [2, 16] and ``logits`` float32 [2, 16, V]: one forward pass
  in eval mode, no attention mask, eager attention, float32;
- ``prompt`` int32 [1, 6] and ``generated`` int32 [1, 16]: greedy
  ``generate`` with the KV cache, 10 new tokens, no end-of-sequence token
  (the whole sequence, prompt included);
- ``tokens_long`` int32 [1, 48] and ``logits_long`` for the cases that need a
  longer input (Phi-3 LongRoPE past ``original_max_position_embeddings``;
  Llama 3 scaling).

``qwen2/tokenizer.json`` is a character-level tokenizer of its 96 ids written by the
``tokenizers`` library (`write_char_tokenizer`), for the pretrained-model experiments.

Random tiny models often fall into repeating one token under greedy decoding,
so each case counts seeds up from its own until a draw has logits far from
uniform, at least 5 distinct tokens among the 10 generated, and a top-1/top-2
logit gap above 2e-3 at every greedy step (a float32 reimplementation then
picks the same tokens); the seed used is recorded. Before writing, the script
checks that the cached ``generate`` equals an uncached argmax loop and that
the saved folder, reloaded with ``AutoModelForCausalLM.from_pretrained``,
reproduces the logits to 1e-6 and the generation exactly. The output is the
same byte for byte on every run. ``tests/data/hf/fixtures.json`` records the
versions, the seeds and per case the model class and what the case exercises.
"""

from __future__ import annotations

import json
import pathlib
import shutil
import sys
import zlib

import numpy as np
import torch
import transformers
from transformers import AutoModelForCausalLM, GenerationConfig

OUT = pathlib.Path(__file__).resolve().parents[1] / "tests" / "data" / "hf"

SEED = 20240611
VOCAB = 96
WEIGHT_STD = 0.25  # every matrix and embedding
BIAS_STD = 0.1
NORM_STD = 0.1  # norm weights: 1 + N(0, 0.1), or N(0, 0.1) where the norm applies (1 + w)
SEQ, BATCH = 16, 2
PROMPT, NEW = 6, 10
LONG = 48
# A draw is kept when its logits are far from uniform, greedy decoding produces at least
# MIN_DISTINCT different tokens out of 10, and every greedy step wins by more than MIN_GAP.
MIN_LOGIT_STD = 0.3
MIN_DISTINCT = 5
MIN_GAP = 2e-3
MAX_ATTEMPTS = 200

# Gemma multiplies the embeddings by sqrt(hidden) and ties the head to them: at the common
# scale the current token's own embedding dominates the logits and greedy decoding repeats it.
GEMMA_INIT = {"embed_std": 0.1}

COMMON = {"vocab_size": VOCAB, "bos_token_id": 1, "eos_token_id": 2}

# (name, config class, model class, config kwargs, options, note)
CASES = [
    (
        "llama",
        "LlamaConfig",
        "LlamaForCausalLM",
        {
            **COMMON,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 16,
            "max_position_embeddings": 512,
            "rms_norm_eps": 1e-5,
            "tie_word_embeddings": False,
            "rope_theta": 500000.0,
            "rope_scaling": {
                "rope_type": "llama3",
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 64,
            },
        },
        {"long": True},
        "Llama 3.1 style: GQA 4 query heads on 2 KV heads, head_dim 16 set explicitly "
        "(hidden 32), rope_theta 5e5 with llama3 scaling (factor 8, original 64: the 8 "
        "frequencies fall in all three bands: kept, smoothed, divided by 8), untied head.",
    ),
    (
        "mistral",
        "MistralConfig",
        "MistralForCausalLM",
        {
            **COMMON,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 64,
            "sliding_window": 6,
            "rope_theta": 10000.0,
        },
        {"shard": "40KB"},
        "Mistral: sliding window 6 on every layer (a query sees itself and the 5 keys "
        "before it, so the 16-token check uses the window), GQA 4/2, saved in 3 shards "
        "with model.safetensors.index.json.",
    ),
    (
        "qwen2",
        "Qwen2Config",
        "Qwen2ForCausalLM",
        {
            **COMMON,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 64,
            "rope_theta": 1000000.0,
            "use_sliding_window": False,
            "tie_word_embeddings": True,
        },
        {},
        "Qwen2: biases on q/k/v projections (none on o_proj), tied embeddings "
        "(no lm_head.weight in the file), rope_theta 1e6, sliding window off.",
    ),
    (
        "qwen3",
        "Qwen3Config",
        "Qwen3ForCausalLM",
        {
            **COMMON,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 16,
            "max_position_embeddings": 64,
            "rope_theta": 1000000.0,
            "use_sliding_window": False,
            "tie_word_embeddings": False,
        },
        {"bf16": True},
        "Qwen3: per-head RMSNorm on q and k (before RoPE), head_dim 16 with hidden 32, "
        "weights stored in bfloat16; expected outputs come from the stored bfloat16 "
        "weights upcast to float32 and run in float32.",
    ),
    (
        "phi3",
        "Phi3Config",
        "Phi3ForCausalLM",
        {
            **COMMON,
            "pad_token_id": 0,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "max_position_embeddings": 128,
            "original_max_position_embeddings": 32,
            "partial_rotary_factor": 0.75,
            "rope_theta": 10000.0,
            "rope_scaling": {
                "type": "longrope",
                "short_factor": [1.0, 1.05, 1.12, 1.2, 1.35, 1.5],
                "long_factor": [1.0, 1.6, 2.5, 3.7, 5.5, 8.0],
            },
        },
        {"long": True},
        "Phi-3/Phi-4-mini style LongRoPE: short factors up to 32 positions, long factors "
        "past original_max_position_embeddings 32 (tokens_long has 48), attention factor "
        "sqrt(1 + ln(128/32)/ln(32)) on cos/sin; partial_rotary_factor 0.75 (12 of 16 head "
        "dims rotate); fused qkv_proj (q 32, k 16, v 16 rows) and gate_up_proj; GQA 2/1.",
    ),
    (
        "gpt_neox",
        "GPTNeoXConfig",
        "GPTNeoXForCausalLM",
        {
            **COMMON,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "max_position_embeddings": 64,
            "rotary_pct": 0.25,
            "rotary_emb_base": 10000,
            "use_parallel_residual": True,
        },
        {},
        "GPT-NeoX (Pythia): parallel residual, rotary on the first 25% of each 16-dim "
        "head (4 dims), fused query_key_value laid out [head, (q, k, v), head_dim], "
        "LayerNorm with biases, exact GELU, untied head (saved as embed_out).",
    ),
    (
        "gpt_neox_sequential",
        "GPTNeoXConfig",
        "GPTNeoXForCausalLM",
        {
            **COMMON,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "max_position_embeddings": 64,
            "rotary_pct": 0.25,
            "rotary_emb_base": 10000,
            "use_parallel_residual": False,
        },
        {},
        "GPT-NeoX with use_parallel_residual False (attention residual first, then the "
        "MLP on post_attention_layernorm of it), one layer.",
    ),
    (
        "gptj",
        "GPTJConfig",
        "GPTJForCausalLM",
        {
            **COMMON,
            "n_embd": 32,
            "n_inner": 64,
            "n_layer": 2,
            "n_head": 4,
            "n_positions": 64,
            "rotary_dim": 4,
        },
        {},
        "GPT-J: interleaved (rotate-every-two) rotary on the first 4 of 8 head dims, "
        "base 10000 fixed in code, one LayerNorm feeding attention and MLP in parallel, "
        "gelu_new (tanh), lm_head with bias.",
    ),
    (
        "gpt2",
        "GPT2Config",
        "GPT2LMHeadModel",
        {**COMMON, "n_embd": 32, "n_inner": 64, "n_layer": 2, "n_head": 4, "n_positions": 64},
        {},
        "GPT-2: learned absolute positions (wpe, 64 rows), Conv1D weights stored "
        "[in, out], fused c_attn [q | k | v], gelu_new (tanh), tied head.",
    ),
    (
        "bloom",
        "BloomConfig",
        "BloomForCausalLM",
        {**COMMON, "hidden_size": 48, "n_layer": 2, "n_head": 6},
        {},
        "BLOOM: ALiBi with 6 heads, not a power of two (slopes 1/4, 1/16, 1/64, 1/256 "
        "from the 4-head series, then 1/2, 1/8 from the odd terms of the 8-head series), "
        "LayerNorm on the word embeddings, fused query_key_value laid out "
        "[head, (q, k, v), head_dim], tanh GELU, MLP 4*hidden, tied head.",
    ),
    (
        "gemma3",
        "Gemma3TextConfig",
        "Gemma3ForCausalLM",
        {
            **COMMON,
            "pad_token_id": 0,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 16,
            "query_pre_attn_scalar": 24,
            "max_position_embeddings": 64,
            "layer_types": ["sliding_attention", "full_attention"],
            "sliding_window_pattern": 2,  # also written out; layer_types is what the model reads
            "sliding_window": 4,
            "rope_theta": 1000000.0,
            "rope_local_base_freq": 10000.0,
            "rope_scaling": {"rope_type": "linear", "factor": 2.0},
            "final_logit_softcapping": None,
            "attn_logit_softcapping": None,
            "tie_word_embeddings": True,
        },
        {"init": GEMMA_INIT},
        "Gemma 3 text: layer 0 sliding (window 4, local RoPE base 1e4), layer 1 global "
        "(base 1e6 with linear scaling factor 2), q/k RMSNorm, softmax scale "
        "query_pre_attn_scalar**-0.5 = 24**-0.5 with head_dim 16, (1 + w) RMSNorm, "
        "pre/post attention and feed-forward norms, embeddings times sqrt(32), tied head, "
        "no softcapping.",
    ),
    (
        "gemma2",
        "Gemma2Config",
        "Gemma2ForCausalLM",
        {
            **COMMON,
            "pad_token_id": 0,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 8,
            "query_pre_attn_scalar": 12,
            "max_position_embeddings": 64,
            "sliding_window": 4,
            "rope_theta": 10000.0,
            "attn_logit_softcapping": 50.0,
            "final_logit_softcapping": 30.0,
            "tie_word_embeddings": True,
        },
        {"init": GEMMA_INIT},
        "Gemma 2: attention logit softcapping 50 and final logit softcapping 30, layer 0 "
        "sliding (window 4), layer 1 global, softmax scale 12**-0.5 with head_dim 8, "
        "(1 + w) RMSNorm, pre/post norms, embeddings times sqrt(32), tied head.",
    ),
]


def case_seed(name: str) -> int:
    return SEED + zlib.crc32(name.encode()) % 10_000


def reinit(model: torch.nn.Module, seed: int, embed_std: float = WEIGHT_STD) -> None:
    """Redraw every parameter: matrices N(0, WEIGHT_STD), biases N(0, BIAS_STD), norms near 1.

    Token embeddings get N(0, embed_std) (tied heads share them). Norm weights the library
    initializes to zero (Gemma's ``x * (1 + w)``) get N(0, NORM_STD), the others
    1 + N(0, NORM_STD); norm biases N(0, NORM_STD).
    """
    gen = torch.Generator().manual_seed(seed)
    embeddings = {
        id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)
    }  # by tensor: a tied lm_head holds the same one
    seen = set()
    with torch.no_grad():
        for _, module in sorted(model.named_modules()):
            is_norm = "Norm" in type(module).__name__
            for pname, p in sorted(module.named_parameters(recurse=False)):
                if id(p) in seen:
                    continue
                seen.add(id(p))
                center = 0.0
                if id(p) in embeddings:
                    std = embed_std
                elif is_norm:
                    std = NORM_STD
                    if pname == "weight":
                        center = float(p.detach().mean().round())  # 1, or 0 for (1 + w)
                elif p.ndim >= 2:
                    std = WEIGHT_STD
                else:
                    std = BIAS_STD
                p.copy_(center + std * torch.randn(p.shape, generator=gen, dtype=torch.float32))
    assert len(seen) == len(list(model.parameters()))


def logits_of(model, tokens: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        out = model(torch.tensor(tokens, dtype=torch.long))
    return out.logits.float().numpy()


def greedy(model, prompt: np.ndarray) -> tuple[np.ndarray, float]:
    """Cached ``generate`` output, checked against an uncached argmax loop; min top-2 gap."""
    config = GenerationConfig(
        max_new_tokens=NEW,
        min_new_tokens=NEW,
        do_sample=False,
        num_beams=1,
        use_cache=True,
        eos_token_id=None,
        pad_token_id=0,
        bos_token_id=None,
    )
    # generate fills unset (None) fields from the model's own generation config, whose
    # eos_token_id would then be suppressed by min_new_tokens: clear it there as well.
    model.generation_config.eos_token_id = None
    ids = torch.tensor(prompt, dtype=torch.long)
    with torch.no_grad():
        generated = model.generate(
            ids, attention_mask=torch.ones_like(ids), generation_config=config
        ).numpy()
    seq = prompt.copy()
    gaps = []
    for _ in range(NEW):
        last = logits_of(model, seq)[0, -1]
        top = np.sort(last)[::-1]
        gaps.append(float(top[0] - top[1]))
        seq = np.concatenate([seq, [[int(last.argmax())]]], axis=1)
    assert generated.shape == (1, PROMPT + NEW), generated.shape
    assert (generated == seq).all(), (generated, seq)
    return generated.astype(np.int32), min(gaps)


def load(path: pathlib.Path, bf16: bool):
    model = AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager")
    if bf16:
        assert next(model.parameters()).dtype == torch.bfloat16
        model = model.float()
    return model.eval()


def build_model(config_cls: str, model_cls: str, kwargs: dict, options: dict, seed: int):
    config = getattr(transformers, config_cls)(**kwargs)
    torch.manual_seed(seed)
    model = getattr(transformers, model_cls)._from_config(config, attn_implementation="eager")
    assert model.config._attn_implementation == "eager"
    reinit(model, seed, **options.get("init", {}))
    return model.eval()


def inputs(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    # Token 0 is the pad id of some configs: generate would mask it out of the prompt.
    return {
        "tokens": rng.integers(1, VOCAB, size=(BATCH, SEQ)).astype(np.int32),
        "prompt": rng.integers(1, VOCAB, size=(1, PROMPT)).astype(np.int32),
        "tokens_long": rng.integers(1, VOCAB, size=(1, LONG)).astype(np.int32),
    }


def quality(model, ins: dict[str, np.ndarray]) -> tuple[float, int, float, np.ndarray]:
    """(mean logit std over the vocabulary, distinct new tokens, min top-2 gap, generated)."""
    std = float(logits_of(model, ins["tokens"]).std(axis=-1).mean())
    generated, gap = greedy(model, ins["prompt"])
    return std, len(set(generated[0, PROMPT:].tolist())), gap, generated


def acceptable(std: float, distinct: int, gap: float) -> bool:
    return std > MIN_LOGIT_STD and distinct >= MIN_DISTINCT and gap > MIN_GAP


def pick_seed(name, config_cls, model_cls, kwargs, options) -> tuple[int, int]:
    """First seed, counting up from the case seed, whose model passes `acceptable`.

    Random tiny models often settle into repeating one token under greedy decoding;
    the search keeps the fixture deterministic while avoiding such draws.
    """
    base = case_seed(name)
    for attempt in range(MAX_ATTEMPTS):
        model = build_model(config_cls, model_cls, kwargs, options, base + attempt)
        if options.get("bf16"):
            model = model.to(torch.bfloat16).float()
        if acceptable(*quality(model, inputs(base + attempt))[:3]):
            return base + attempt, attempt
    raise RuntimeError(f"{name}: no acceptable seed in {MAX_ATTEMPTS} attempts")


def build_case(name, config_cls, model_cls, kwargs, options, note) -> dict:
    seed, attempt = pick_seed(name, config_cls, model_cls, kwargs, options)
    model = build_model(config_cls, model_cls, kwargs, options, seed)
    ins = inputs(seed)

    folder = OUT / name
    if folder.exists():
        shutil.rmtree(folder)
    save_kwargs = {"safe_serialization": True}
    if "shard" in options:
        save_kwargs["max_shard_size"] = options["shard"]
    if options.get("bf16"):
        model.to(torch.bfloat16).save_pretrained(folder, **save_kwargs)
        model = load(folder, bf16=True)  # expected outputs from the stored bfloat16 weights
    else:
        model.save_pretrained(folder, **save_kwargs)
    (folder / "generation_config.json").unlink(missing_ok=True)

    std, distinct, gap, generated = quality(model, ins)
    assert acceptable(std, distinct, gap), (name, std, distinct, gap)
    expected = {
        "tokens": ins["tokens"],
        "logits": logits_of(model, ins["tokens"]),
        "prompt": ins["prompt"],
        "generated": generated,
    }
    if options.get("long"):
        expected["tokens_long"] = ins["tokens_long"]
        expected["logits_long"] = logits_of(model, ins["tokens_long"])

    # The saved folder alone reproduces every stored output.
    reloaded = load(folder, bf16=bool(options.get("bf16")))
    for key, tok in (("logits", "tokens"), ("logits_long", "tokens_long")):
        if key in expected:
            err = float(np.abs(logits_of(reloaded, expected[tok]) - expected[key]).max())
            assert err <= 1e-6, (name, key, err)
    assert (greedy(reloaded, expected["prompt"])[0] == expected["generated"]).all(), name
    for key, value in expected.items():
        want = np.float32 if key.startswith("logits") else np.int32
        assert value.dtype == want, (key, value.dtype)
    np.savez(folder / "expected.npz", **expected)

    files = sorted(p.name for p in folder.iterdir())
    return {
        "model_class": model_cls,
        "config_class": config_cls,
        "model_type": model.config.model_type,
        "note": note,
        "seed": seed,
        "seed_attempt": attempt,
        "embedding_std": options.get("init", {}).get("embed_std", WEIGHT_STD),
        "weights_dtype": "bfloat16" if options.get("bf16") else "float32",
        "compute_dtype": "float32",
        "sharded": "shard" in options,
        "files": files,
        "arrays": {key: list(value.shape) for key, value in expected.items()},
        "bytes": sum((folder / f).stat().st_size for f in files),
        "logits_std": round(std, 4),
        "distinct_generated_tokens": distinct,
        "min_greedy_top2_gap": round(gap, 4),
    }


def write_char_tokenizer(folder: pathlib.Path) -> None:
    """A character-level ``tokenizer.json`` for a 96-token model, written by the
    ``tokenizers`` library: id 0 ``[UNK]``, 1 newline, 2..95 the characters chr(32)..chr(125)
    (a BPE model without merges). The pretrained-model experiments read text with it."""
    from tokenizers import Tokenizer
    from tokenizers.models import BPE

    vocab = {"[UNK]": 0, "\n": 1, **{chr(c): c - 30 for c in range(32, 126)}}
    tok = Tokenizer(BPE(vocab=vocab, merges=[], unk_token="[UNK]"))
    tok.save(str(folder / "tokenizer.json"))


def main() -> int:
    torch.set_num_threads(1)  # deterministic float32 reductions on CPU
    OUT.mkdir(parents=True, exist_ok=True)
    cases = {}
    for case in CASES:
        cases[case[0]] = build_case(*case)
    write_char_tokenizer(OUT / "qwen2")
    payload = {
        "description": (
            "Tiny random-weight Hugging Face checkpoints (save_pretrained, safetensors) with "
            "their logits and greedy generations, generated by tools/make_hf_fixtures.py. "
            "expected.npz: tokens [2,16] -> logits [2,16,V] (float32, eval, eager attention, "
            "no attention mask); prompt [1,6] -> generated [1,16] (greedy generate with the "
            "KV cache, 10 new tokens, no eos, prompt included); tokens_long [1,48] -> "
            "logits_long where present."
        ),
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
        "seed": SEED,
        "per_case_seed": (
            "cases[name].seed = seed + crc32(name) % 10000 + seed_attempt (the first draw that "
            "passes the checks), used for torch.manual_seed, the weight redraw generator and "
            "numpy.random.default_rng for the tokens"
        ),
        "checks": {
            "min_logit_std": MIN_LOGIT_STD,
            "min_distinct_new_tokens": MIN_DISTINCT,
            "min_greedy_top2_gap": MIN_GAP,
            "reload_logits_max_abs_err": 1e-6,
        },
        "init": {
            "matrices_and_embeddings_std": WEIGHT_STD,
            "embeddings_std_gemma": GEMMA_INIT["embed_std"],
            "bias_std": BIAS_STD,
            "norm_weight": f"1 + N(0, {NORM_STD}), or N(0, {NORM_STD}) for (1 + w) norms",
            "norm_bias_std": NORM_STD,
        },
        "cases": cases,
    }
    (OUT / "fixtures.json").write_text(json.dumps(payload, indent=1) + "\n")

    print(f"{'case':22s} {'files':>5s} {'bytes':>8s} {'logit std':>9s} {'gap':>7s}  tokens")
    for name, c in cases.items():
        print(
            f"{name:22s} {len(c['files']):5d} {c['bytes']:8d} {c['logits_std']:9.3f} "
            f"{c['min_greedy_top2_gap']:7.3f}  {c['distinct_generated_tokens']}"
        )
    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"total {total} bytes in {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
