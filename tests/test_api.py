"""The public API: every name in ``posenc_jax.__all__`` imports and is what it claims."""

import inspect

import posenc_jax
from posenc_jax import (
    absolute,
    alibi,
    attention,
    cope,
    deberta,
    fire,
    fox,
    kerple,
    pope,
    random_distances,
    relative,
    rope,
    schemes,
    softmax_scale,
    stick_breaking,
    transformer_xl,
    tupe,
    xpos,
)
from posenc_jax.rope import rectified


def test_every_public_name_resolves_to_its_module_object():
    modules = [absolute, alibi, attention, deberta, fire, kerple, relative, rope, schemes]
    modules += [softmax_scale, transformer_xl, tupe, xpos]
    modules += [cope, fox, pope, stick_breaking, rectified, random_distances]
    for name in posenc_jax.__all__:
        obj = getattr(posenc_jax, name)
        homes = [m for m in modules if name in getattr(m, "__all__", ())]
        assert homes, f"{name} is exported but no module lists it in __all__"
        assert all(getattr(m, name) is obj for m in homes), name


def test_public_functions_have_docstrings_and_return_types():
    for name in posenc_jax.__all__:
        obj = getattr(posenc_jax, name)
        if not inspect.isfunction(obj):
            continue
        assert obj.__doc__, f"{name} has no docstring"
        sig = inspect.signature(obj)
        assert sig.return_annotation is not inspect.Signature.empty, f"{name} lacks a return type"


def test_importing_the_package_registers_every_scheme():
    assert set(posenc_jax.list_schemes()) >= {
        "nope",
        "learned",
        "sinusoidal",
        "shaw",
        "t5",
        "rope",
        "alibi",
        "xpos",
        "kerple",
        "fire",
        "xl",
        "deberta",
        "tupe",
    }
