"""The one list of scheme configurations the scheme-generic tests run over.

Every registered scheme must appear here (tests/test_schemes.py checks it), so a
newly registered scheme is tested everywhere: jit, grad, blockwise = dense,
KV-cache decoding = full forward, left padding, fully masked rows, training.
Settings are small so tiny shapes still exercise clipping, buckets and decay.
"""

from posenc_jax.schemes import list_schemes, make_scheme

SCHEME_CASES: dict[str, dict] = {
    "nope": {"name": "nope"},
    "learned": {"name": "learned", "max_length": 64},
    "sinusoidal": {"name": "sinusoidal"},
    "abacus": {"name": "abacus", "digit_ids": [1, 2, 3, 4, 5], "max_length": 24, "max_offset": 4},
    "shaw": {"name": "shaw", "max_distance": 4},
    "t5": {"name": "t5", "num_buckets": 8, "max_distance": 16},
    "rope": {"name": "rope"},
    "rope-interleaved-partial": {"name": "rope", "layout": "interleaved", "rotary_fraction": 0.5},
    "rope-linear": {"name": "rope", "scaling": {"rope_type": "linear", "factor": 2.0}},
    "rope-p": {"name": "rope", "keep_fraction": 0.5},
    "windowed-rope": {
        "name": "windowed_rope",
        "method": "leaky_rerope",
        "window": 3,
        "factor": 2.5,
    },
    "rope-yarn": {
        "name": "rope",
        "scaling": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16},
    },
    "alibi": {"name": "alibi"},
    "alibi-ruoss": {"name": "alibi", "bidirectional": "ruoss"},
    "xpos": {"name": "xpos", "scale_base": 16.0, "center": 20},
    "pope": {"name": "pope", "base": 100.0},
    "kerple-log": {"name": "kerple", "kind": "log"},
    "kerple-power": {"name": "kerple", "kind": "power"},
    "fire": {"name": "fire", "hidden": 16, "init_threshold": 8.0},
    "xl": {"name": "xl", "dim": 16},
    "deberta": {"name": "deberta", "position_buckets": 8, "max_relative_positions": 16},
    "fox": {"name": "fox", "bias_init": 1.0},
    "stick-breaking": {"name": "stick_breaking"},
    "cope": {"name": "cope", "npos": 6},
    "tupe-r": {
        "name": "tupe",
        "max_length": 160,
        "dim": 16,
        "relative": True,
        "num_buckets": 8,
        "max_distance": 16,
    },
}

CASE_IDS = list(SCHEME_CASES)
CASES = list(SCHEME_CASES.values())


def bidirectional_cases() -> list[str]:
    """Ids of the cases whose scheme serves an encoder (``configure(causal=False)`` works)."""
    out = []
    for case_id, spec in SCHEME_CASES.items():
        try:
            make_scheme(spec).configure(causal=False)
        except ValueError:
            continue
        out.append(case_id)
    return out


def unlisted_schemes() -> set[str]:
    """Registered scheme names that no case covers (must be empty)."""
    return set(list_schemes()) - {spec["name"] for spec in SCHEME_CASES.values()}
