"""Figures: valid PNGs, the expected panels, and plotted numbers equal to the library's."""

import jax
import jax.numpy as jnp
import matplotlib.image
import numpy as np
import pytest
from flax import nnx

from posenc_jax import absolute, alibi, deberta, relative, rope
from posenc_jax.harness.figures import attention_maps, encodings, panel_axes
from posenc_jax.harness.figures.results import figure_length_plot, plot_results
from posenc_jax.nn import TransformerEncoder, TransformerLM

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _line(ax, label):
    (line,) = [ln for ln in ax.lines if ln.get_label() == label]
    return line


def _check_png(path):
    assert path.exists()
    assert path.read_bytes()[:8] == PNG_MAGIC
    img = matplotlib.image.imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100


def test_sinusoidal_figure_plots_the_encodings_dot_products():
    fig = encodings.figure_sinusoidal(dim=16, length=32)
    assert len(fig.axes) == 3  # two panels and the heatmap's colorbar
    ax_map, ax_line = panel_axes(fig)  # 2 panels
    pe = np.asarray(absolute.sinusoidal(jnp.arange(32), 16), np.float64)
    np.testing.assert_allclose(ax_map.images[0].get_array(), pe @ pe.T, rtol=1e-6)
    # Independent check of what the line shows: PE_0 . PE_k = sum_i cos(k w_i).
    k = np.arange(32)
    w = 10000.0 ** (-np.arange(0, 16, 2) / 16)
    expected = np.cos(k[:, None] * w[None, :]).sum(-1)
    np.testing.assert_allclose(_line(ax_line, "PE_0 · PE_k").get_ydata(), expected, atol=1e-4)


def test_rope_decay_figure_plots_the_bound_of_each_schedule():
    scalings = {"linear x4": {"rope_type": "linear", "factor": 4.0}}
    fig = encodings.figure_rope_decay(head_dim=16, max_distance=50, scalings=scalings)
    assert len(fig.axes) == 2
    ax_base, ax_scale = panel_axes(fig)
    d = np.arange(1, 51)
    for base in (10000.0, 500000.0):
        inv_freq, _ = rope.rope_frequencies(16, base=base)
        np.testing.assert_allclose(
            _line(ax_base, f"base {base:g}").get_ydata(),
            rope.rope_decay_bound(d, inv_freq),
            rtol=1e-6,
        )
    inv_freq, _ = rope.rope_frequencies(16, scaling=scalings["linear x4"])
    np.testing.assert_allclose(
        _line(ax_scale, "linear x4").get_ydata(), rope.rope_decay_bound(d, inv_freq), rtol=1e-6
    )
    np.testing.assert_array_equal(_line(ax_scale, "none").get_xdata(), d)
    # The bound decays: far distances sit well below distance 1 (RoFormer section 3.4.3).
    y = _line(ax_base, "base 10000").get_ydata()
    assert y[-10:].max() < 0.75 * y[0]


def test_default_rope_decay_figure_has_every_scaling():
    fig = encodings.figure_rope_decay(head_dim=8, max_distance=16)
    labels = {ln.get_label() for ln in panel_axes(fig)[1].lines}
    assert labels == {"none", "linear x4", "ntk x4", "yarn x4"}


def test_rope_frequency_figure_plots_wavelengths_of_each_method():
    fig = encodings.figure_rope_frequencies(
        head_dim=16, factor=4.0, original_max_position_embeddings=64
    )
    assert len(fig.axes) == 1
    (ax,) = panel_axes(fig)
    methods = encodings.rope_scaling_methods(factor=4.0, original_max_position_embeddings=64)
    assert list(methods) == ["none", "linear", "ntk", "yarn", "llama3"]
    for label, scaling in methods.items():
        inv_freq, _ = rope.rope_frequencies(16, scaling=scaling)
        np.testing.assert_allclose(
            _line(ax, label).get_ydata(), 2 * np.pi / np.asarray(inv_freq, np.float64)
        )
    # Linear interpolation stretches every wavelength by the factor.
    np.testing.assert_allclose(
        _line(ax, "linear").get_ydata(), 4.0 * _line(ax, "none").get_ydata(), rtol=1e-6
    )


@pytest.mark.parametrize("bidirectional", [False, True])
def test_alibi_figure_plots_each_heads_bias(bidirectional):
    fig = encodings.figure_alibi(num_heads=8, length=6, bidirectional=bidirectional)
    axes = panel_axes(fig)
    assert len(axes) == len(fig.axes) == 8
    pos = jnp.arange(6)
    bias = np.asarray(
        alibi.alibi_bias(pos, pos, alibi.alibi_slopes(8), bidirectional=bidirectional)
    )
    future = np.triu(np.ones((6, 6), bool), 1)
    for h, ax in enumerate(axes):
        data = ax.images[0].get_array()
        np.testing.assert_allclose(np.ma.getdata(data), bias[h])
        np.testing.assert_array_equal(np.ma.getmaskarray(data), future & (not bidirectional))
    # Head 0 has slope 1/2: the query at 5 sees the key at 0 with bias -2.5.
    np.testing.assert_allclose(np.ma.getdata(axes[0].images[0].get_array())[5, 0], -2.5)


def test_t5_figure_plots_the_buckets():
    fig = encodings.figure_t5_buckets(num_buckets=16, max_distance=32, span=50)
    axes = panel_axes(fig)
    assert len(axes) == len(fig.axes) == 2
    rel = np.arange(-50, 51)
    for ax, bidirectional in zip(axes, (True, False), strict=True):
        line = _line(ax, "bucket")
        np.testing.assert_array_equal(line.get_xdata(), rel)
        expected = relative.t5_relative_bucket(
            jnp.asarray(rel), bidirectional=bidirectional, num_buckets=16, max_distance=32
        )
        np.testing.assert_array_equal(line.get_ydata(), expected)
    # Causal: every key after the query shares bucket 0.
    assert np.all(_line(axes[1], "bucket").get_ydata()[rel > 0] == 0)


def test_shaw_figure_plots_the_clipped_index():
    fig = encodings.figure_shaw(length=9, max_distance=3)
    (ax,) = panel_axes(fig)
    assert len(fig.axes) == 2  # with the colorbar
    data = ax.images[0].get_array()
    np.testing.assert_array_equal(
        data, relative.shaw_relative_index(jnp.arange(9), jnp.arange(9), 3)
    )
    i, j = np.meshgrid(np.arange(9), np.arange(9), indexing="ij")
    np.testing.assert_array_equal(data, np.clip(j - i, -3, 3) + 3)  # Shaw et al. section 3.2


def test_transformer_xl_figure_plots_the_global_position_term():
    fig = encodings.figure_transformer_xl(
        dim=8, num_heads=2, head_dim=4, length=6, span=10, clamp_len=4
    )
    ax_map, ax_line = panel_axes(fig)
    assert len([ln for ln in ax_line.lines if ln.get_label().startswith("head")]) == 2
    grid = np.asarray(ax_map.images[0].get_array())  # head 0, [T, S]
    head0 = _line(ax_line, "head 0")
    np.testing.assert_array_equal(head0.get_xdata(), np.arange(-10, 11))
    y = head0.get_ydata()
    # The heatmap is the curve read at i - j: a function of the distance only.
    i, j = np.meshgrid(np.arange(6), np.arange(6), indexing="ij")
    np.testing.assert_allclose(grid, y[i - j + 10], atol=1e-4)
    y1 = _line(ax_line, "head 1").get_ydata()
    np.testing.assert_allclose(y1[:7], y1[6], atol=1e-6)  # i - j <= -4 reads R_-4
    np.testing.assert_allclose(y1[14:], y1[14], atol=1e-6)  # i - j >= 4 reads R_4


def test_deberta_figure_plots_buckets_and_rows():
    fig = encodings.figure_deberta(span=700, length=10, small_buckets=4, small_max=8)
    ax_line, ax_map = panel_axes(fig)
    line = _line(ax_line, "bucket")
    rel = np.arange(-700, 701)
    np.testing.assert_array_equal(line.get_xdata(), rel)
    np.testing.assert_array_equal(line.get_ydata(), deberta.deberta_log_bucket(jnp.asarray(rel)))
    assert line.get_ydata()[700 + 511] == 255 and line.get_ydata()[700 + 128] == 128
    pos = jnp.arange(10)
    np.testing.assert_array_equal(
        ax_map.images[0].get_array(),
        deberta.deberta_relative_index(pos, pos, position_buckets=4, max_relative_positions=8),
    )


def test_tupe_figure_plots_the_untied_term_and_cls_thetas():
    fig = encodings.figure_tupe(length=8, dim=8, num_buckets=8, max_distance=16)
    ax_untied, ax_rel = panel_axes(fig)
    untied, rel = ax_untied.images[0].get_array(), ax_rel.images[0].get_array()
    np.testing.assert_allclose(untied[0], -1.0)  # [CLS] to the others: theta_1
    np.testing.assert_allclose(untied[1:, 0], 1.0)  # the others to [CLS]: theta_2
    pe = np.asarray(absolute.sinusoidal(jnp.arange(8), 8), np.float64)
    np.testing.assert_allclose(untied[1:, 1:], (pe @ pe.T)[1:, 1:] / 4.0, atol=1e-5)
    buckets = relative.t5_relative_bucket(
        jnp.arange(8)[None, :] - jnp.arange(8)[:, None], num_buckets=8, max_distance=16
    )
    np.testing.assert_array_equal(rel[1:, 1:], np.asarray(buckets)[1:, 1:])


def test_research_figure_plots_xpos_kerple_and_fire():
    kerple = (("log", 1.0, 0.5), ("power", 0.5, 1.5), ("log", 2.0, 0.1))
    fig = encodings.figure_research_schemes(
        head_dim=8, scale_base=16.0, max_distance=40, kerple=kerple, fire_queries=(4, 30)
    )
    assert len(fig.axes) == 3
    ax_x, ax_k, ax_f = panel_axes(fig)
    n = np.arange(41)
    # All-ones q at n and k at 0: pair i contributes 2 cos(n theta_i), times zeta_i^(n/s) for xPos.
    theta = 10000.0 ** (-np.arange(0, 8, 2) / 8)
    zeta = (np.arange(0, 8, 2) + 0.4 * 8) / (1.4 * 8)
    cos = np.cos(n[:, None] * theta[None, :])
    np.testing.assert_allclose(_line(ax_x, "RoPE").get_ydata(), 2 * cos.sum(-1) / 8, atol=1e-5)
    xpos = 2 * (cos * zeta[None, :] ** (n[:, None] / 16.0)).sum(-1) / 8
    np.testing.assert_allclose(_line(ax_x, "xPos").get_ydata(), xpos, atol=1e-5)
    for kind, r1, r2 in kerple:
        y = _line(ax_k, f"{kind} r1={r1:g} r2={r2:g}").get_ydata()
        ref = -r1 * np.log1p(r2 * n) if kind == "log" else -r1 * n**r2
        np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)
    for i in (4, 30):
        line = _line(ax_f, f"query i = {i}")
        dist = line.get_xdata()
        ref = np.log1p(0.1 * dist) / (np.log1p(0.1 * max(i, 512.0)) + 1e-6)
        np.testing.assert_allclose(line.get_ydata(), ref, rtol=1e-5)


# --------------------------------------------------------------------------------------------
# Attention maps
# --------------------------------------------------------------------------------------------

VOCAB = 13


def _model(spec, cls=TransformerLM, **kw):
    opts = dict(num_layers=2, d_model=16, num_heads=2)
    opts.update(kw)
    return cls(VOCAB, scheme=spec, rngs=nnx.Rngs(0), **opts)


@pytest.mark.parametrize(
    ("spec", "cls"),
    [
        ("alibi", TransformerLM),
        ({"name": "shaw", "max_distance": 3}, TransformerEncoder),
        ({"name": "xpos", "scale_base": 8.0}, TransformerLM),
        ({"name": "fire", "hidden": 8, "init_threshold": 4.0}, TransformerLM),
        ({"name": "kerple", "kind": "power"}, TransformerEncoder),
    ],
    ids=["alibi", "shaw-encoder", "xpos", "fire", "kerple-encoder"],
)
def test_layer_attention_weights_are_the_weights_that_layer_sows(spec, cls):
    """The weights of the asked layer, with the given positions and padding, and only those.

    That sown weights are the layer's softmax (and, times v, its output) is tested with
    `MultiHeadAttention` in test_nn.py; here: the right layer, inputs and masks.
    """
    model = _model(spec, cls, num_kv_heads=1)
    tokens = jax.random.randint(jax.random.PRNGKey(0), (2, 9), 0, VOCAB)
    positions = jnp.arange(9) + 3
    mask = jnp.ones((2, 9), bool).at[1, :2].set(False)
    every_layer = nnx.view(model, sow_weights=True)
    forward = nnx.jit(
        nnx.capture(lambda m, *a: m(a[0], positions=a[1], padding_mask=a[2]), nnx.Intermediate)
    )  # compiled: cheaper than eager here
    _, sown = forward(every_layer, tokens, positions, mask)
    maps = []
    for layer in (0, 1):
        w = attention_maps.layer_attention_weights(
            model, tokens, layer=layer, positions=positions, padding_mask=mask
        )
        assert w.shape == (2, 2, 9, 9) and w.dtype == np.float32
        (expected,) = sown["blocks"][layer]["attn"]["attention_weights"].get_value()
        np.testing.assert_allclose(w, expected, atol=1e-6)
        sums = np.ones((2, 2, 9))
        if model.causal:
            sums[1, :, :2] = 0.0  # padding queries see no real key at or before them
        np.testing.assert_allclose(w.sum(-1), sums, atol=1e-5)
        if model.causal:
            assert np.all(w[..., np.triu_indices(9, 1)[0], np.triu_indices(9, 1)[1]] == 0)
        assert np.all(w[1, :, :, :2] == 0)  # padding keys get no weight
        maps.append(w)
    assert not np.allclose(maps[0], maps[1], atol=1e-3)  # two layers, two maps
    assert not any(block.attn.sow_weights for block in model.blocks)  # the model is unchanged


def test_attention_weights_bad_layer():
    with pytest.raises(ValueError, match="layer"):
        attention_maps.layer_attention_weights(
            _model("nope"), jnp.zeros((1, 3), jnp.int32), layer=2
        )


def test_attention_map_figure_has_a_panel_per_scheme_and_length():
    models = {"alibi": _model("alibi", num_layers=1), "fire": _model("fire", num_layers=1)}
    tokens = {12: jnp.arange(12) % VOCAB, 5: jnp.arange(10).reshape(2, 5) % VOCAB}
    fig = attention_maps.figure_attention_maps(models, tokens, head=1, train_length=8)
    axes = panel_axes(fig)
    assert len(axes) == 4
    assert [ax.get_title() for ax in axes] == [
        "alibi, T=5 (train)",
        "alibi, T=12 (beyond training)",
        "fire, T=5 (train)",
        "fire, T=12 (beyond training)",
    ]
    expected = attention_maps.layer_attention_weights(models["fire"], jnp.arange(12)[None] % VOCAB)[
        0, 1
    ]
    np.testing.assert_allclose(axes[3].images[0].get_array(), expected)
    expected = attention_maps.layer_attention_weights(models["alibi"], jnp.arange(5)[None])[0, 1]
    np.testing.assert_allclose(axes[0].images[0].get_array(), expected)
    with pytest.raises(ValueError, match="at least one"):
        attention_maps.figure_attention_maps({}, tokens)


def test_abacus_figure_plots_each_tokens_place_with_and_without_offset():
    """Reversed 98 + 9 = 107: '8 9 + 9 = 7 0 1' has places 1 2 0 1 0 1 2 3."""
    fig = encodings.figure_abacus(a=98, b=9, offset=5)
    (ax,) = fig.axes
    places = np.array([1, 2, 0, 1, 0, 1, 2, 3])
    assert [t.get_text() for t in ax.get_xticklabels()] == list("89+9=701")
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), places)
    np.testing.assert_array_equal(ax.lines[1].get_ydata(), np.where(places > 0, places + 5, 0))


def test_randomized_alibi_figure_positions_break_diagonals_distances_keep_them():
    """Panel 1 is -|i - j| (+0.5 left of the diagonal); panel 3 is constant along every
    diagonal and reaches beyond the sequence length; panel 2's diagonals vary."""
    fig = encodings.figure_randomized_alibi(length=8, max_distance=200, seed=1)
    panels = [ax.images[0].get_array() for ax in fig.axes[:3]]
    i, j = np.meshgrid(np.arange(8), np.arange(8), indexing="ij")
    np.testing.assert_array_equal(panels[0], -np.abs(i - j) + 0.5 * (j < i))
    for r in range(-7, 8):
        assert np.ptp(np.diagonal(panels[2], offset=r)) == 0
    assert max(np.ptp(np.diagonal(panels[1], offset=r)) for r in range(-6, 7)) > 0
    assert panels[2].min() < -8


def test_draw_all_writes_every_picture_as_a_png(tmp_path, monkeypatch):
    """Each fig_xxx(out_path, **options) through draw_all; small options keep this test fast."""
    small = {
        "sinusoidal.png": dict(dim=8, length=8),
        "rope_decay.png": dict(head_dim=8, max_distance=8),
        "rope_frequencies.png": dict(head_dim=8),
        "alibi.png": dict(num_heads=2, length=4),
        "t5_buckets.png": dict(span=8),
        "shaw.png": dict(length=4, max_distance=1),
        "xpos_kerple_fire.png": dict(head_dim=8, max_distance=8, fire_queries=(4,)),
        "transformer_xl.png": dict(dim=8, num_heads=2, head_dim=2, length=4, span=4),
        "deberta.png": dict(span=8, length=4, small_buckets=2, small_max=4),
        "tupe.png": dict(length=4, dim=4, num_buckets=4, max_distance=8),
        "gated.png": dict(length=6),
        "pope.png": dict(head_dim=4, max_distance=4, pairs=1),
        "abacus.png": dict(a=12, b=9, offset=3),
        "randomized_alibi.png": dict(length=4, max_distance=16),
    }
    assert set(small) == set(encodings.STATIC_FIGURES)
    writers = {
        name: (lambda path, w=w, o=small[name]: w(path, **o))
        for name, w in encodings.STATIC_FIGURES.items()
    }
    monkeypatch.setattr(encodings, "STATIC_FIGURES", writers)
    models = {"alibi": _model("alibi", num_layers=1)}
    paths = encodings.draw_all(
        tmp_path / "figs", model_by_scheme=models, tokens_by_length={4: jnp.arange(4)}
    )
    assert [p.name for p in paths] == [*small, "attention_maps.png"]
    for path in paths:
        _check_png(path)


def test_run_attention_maps_are_the_trained_seeds_attention(tmp_path):
    """Maps from a stacked multi-seed state equal layer_attention_weights of that seed's model."""
    from posenc_jax.harness.config import EvalConfig, ModelConfig, TrainConfig
    from posenc_jax.harness.tasks import get_task
    from posenc_jax.harness.train import build_model_fn, init_state, make_optimizer
    from posenc_jax.schemes import make_scheme

    task = get_task("copy", num_symbols=5)
    scheme = make_scheme("alibi").configure(causal=task.causal)
    make = build_model_fn(
        task, scheme, ModelConfig(num_layers=1, d_model=16, num_heads=2), EvalConfig()
    )
    graphdef, state = init_state(make, [3, 7], make_optimizer(TrainConfig()))
    lengths = attention_maps.attention_map_lengths(task, 4, [4, 8, 64], max_tokens=40)
    assert lengths == [4, 8]  # 64 is too long for 40 tokens; the train length comes first
    assert attention_maps.attention_map_lengths(task, 30, [40], max_tokens=40) == []
    maps = attention_maps.run_attention_maps(task, graphdef, state, lengths, seed_index=1)
    model = make(jax.random.key(7))
    for length in lengths:
        batch = task.sample_batch(np.random.default_rng([length, 7919]), 1, length)
        expected = attention_maps.layer_attention_weights(model, batch.tokens)[0]
        assert maps[length].shape == (2, task.sequence_length(length), task.sequence_length(length))
        np.testing.assert_allclose(maps[length], expected, atol=1e-6)

    path = attention_maps.save_attention_maps(
        tmp_path / "a" / "run.npz", maps, scheme="alibi", task="copy", train_length=4
    )
    saved = attention_maps.load_attention_maps(path)
    assert (saved["scheme"], saved["task"], saved["train_length"]) == ("alibi", "copy", 4)
    for length in lengths:  # stored as float16
        np.testing.assert_allclose(saved["maps"][length], maps[length], atol=1e-3)

    records = [{"scheme": "alibi", "task": "copy"}]
    attention_maps.save_attention_maps(  # a run without records (e.g. a stale file) is not drawn
        tmp_path / "attention" / "other.npz", maps, scheme="rope", task="copy", train_length=4
    )
    (tmp_path / "attention" / "run.npz").write_bytes(path.read_bytes())
    (png,) = attention_maps.draw_run_attention_maps(tmp_path, records)
    assert png.name == "attention_copy.png"
    _check_png(png)


def test_attention_array_figure_panels_and_values():
    rng = np.random.default_rng(0)
    maps = {
        "rope": {4: rng.random((2, 5, 5)), 9: rng.random((2, 10, 10))},
        "nope": {4: rng.random((2, 5, 5))},
    }
    fig = attention_maps.figure_attention_arrays(maps, train_length=4)
    axes = fig.axes
    assert len(axes) == 4
    assert [ax.get_title() for ax in axes] == [
        "rope, T=5 (train)",
        "rope, T=10 (beyond training)",
        "nope, T=5 (train)",
        "",
    ]
    assert not axes[3].axison  # nope has no map at length 9
    np.testing.assert_allclose(axes[1].images[0].get_array(), maps["rope"][9].mean(axis=0))
    with pytest.raises(ValueError, match="at least one"):
        attention_maps.figure_attention_arrays({})


def test_length_plot_draws_each_schemes_seed_mean_and_range(tmp_path):
    records = [
        dict(task="copy", scheme=s, eval_length=n, accuracy=acc, train_length=10, seed=seed)
        for s, base in (("rope", 0.5), ("nope", 0.2))
        for n in (10, 20, 40)
        for seed, acc in enumerate((base + 0.001 * n, base + 0.002 * n))
    ]
    fig = figure_length_plot(records, title="copy")
    (ax,) = panel_axes(fig)
    assert ax.get_title() == "copy" and ax.get_ylabel() == "accuracy"
    rope = _line(ax, "rope")
    np.testing.assert_array_equal(rope.get_xdata(), [10, 20, 40])
    np.testing.assert_allclose(rope.get_ydata(), [0.5 + 0.0015 * n for n in (10, 20, 40)])
    np.testing.assert_array_equal(_line(ax, "train length").get_xdata(), [10, 10])
    assert len(ax.collections) == 2  # one seed band per scheme
    failed = dict(task="lm", scheme="rope", eval_length=10, status="failed")
    paths = plot_results([*records, failed], tmp_path / "plots")
    assert [p.name for p in paths] == ["length_copy.png"]  # the failed lm record is left out
    _check_png(paths[0])
