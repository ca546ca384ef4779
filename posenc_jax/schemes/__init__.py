"""The scheme layer: one registry of positional schemes, name -> settings + hooks + variants.

One module per family; importing this package registers them all:

* `posenc_jax.schemes.base`: the `Scheme` base class (hooks, parameters, variants);
* `posenc_jax.schemes.registry`: `register_scheme`, `make_scheme`, `list_schemes`;
* `posenc_jax.schemes.absolute`: NoPE, learned, sinusoidal, Abacus (input hook), TUPE (q/k and
  logit hooks: absolute positions untied from the content);
* `posenc_jax.schemes.rotary`: RoPE and its context extensions, xPos, PoPE (q/k hook);
  windowed RoPE (ReRoPE, Leaky ReRoPE, SelfExtend: a logit hook with both rotations);
* `posenc_jax.schemes.bias`: ALiBi, T5, KERPLE, FIRE (logit hook);
* `posenc_jax.schemes.relative`: Shaw (logit and value hooks), Transformer-XL and DeBERTa
  (logit hook reading q and k);
* `posenc_jax.schemes.gated`: FoX (token-state and logit hooks: a decay the tokens choose)
  stick-breaking attention (its weights replace the softmax) and CoPE (logit hook reading
  q, k and the mask: positions that count the keys its gates select).

This layer imports the pure-function modules and no Flax; attention, the NNX
modules and the experiment harness ask a scheme for its hooks and variants and
never test its name.

Example:
    >>> scheme = make_scheme({"name": "alibi"}).configure(causal=True)
    >>> sorted(scheme.hooks)
    ['logit_bias']
"""

from posenc_jax.schemes.absolute import (
    AbacusScheme,
    LearnedScheme,
    NoPEScheme,
    SinusoidalScheme,
    TupeScheme,
)
from posenc_jax.schemes.base import DISTANCES, FrozenDict, Params, Scheme
from posenc_jax.schemes.bias import AlibiScheme, FireScheme, KerpleScheme, T5Scheme
from posenc_jax.schemes.gated import CopeScheme, FoxScheme, StickBreakingScheme
from posenc_jax.schemes.registry import (
    SCHEMES,
    context_extension_names,
    list_schemes,
    make_scheme,
    register_scheme,
)
from posenc_jax.schemes.relative import DebertaScheme, ShawScheme, TransformerXLScheme
from posenc_jax.schemes.rotary import PopeScheme, RopeScheme, WindowedRopeScheme, XposScheme

__all__ = [
    "DISTANCES",
    "SCHEMES",
    "AbacusScheme",
    "AlibiScheme",
    "CopeScheme",
    "DebertaScheme",
    "FireScheme",
    "FoxScheme",
    "FrozenDict",
    "KerpleScheme",
    "LearnedScheme",
    "NoPEScheme",
    "Params",
    "PopeScheme",
    "RopeScheme",
    "Scheme",
    "ShawScheme",
    "SinusoidalScheme",
    "StickBreakingScheme",
    "T5Scheme",
    "TransformerXLScheme",
    "TupeScheme",
    "WindowedRopeScheme",
    "XposScheme",
    "context_extension_names",
    "list_schemes",
    "make_scheme",
    "register_scheme",
]
