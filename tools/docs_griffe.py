"""Griffe extension for the API reference: reads the project's docstring conventions.

The docstrings are Google style with two habits that griffe's Google parser reads
otherwise (named in ``mkdocs.yml`` under the mkdocstrings ``extensions`` option):

* ``Example:`` opens the runnable ``>>>`` examples; griffe knows the section only as
  ``Examples:`` and would render the doctest lines as prose.
* Parameters that share a description are listed together, ``q_len, k_len: T and S.``,
  and such a list may wrap onto the next line; the wrapped list is joined into one
  line here, so that griffe reads one item.
* Attributes set in ``__init__`` without a docstring (an NNX module's sublayers,
  ``self.q_proj = nnx.Linear(...)``) are internals, and are left out of the pages.
  Dataclass fields and module constants stay, documented or not.

Griffe's warnings about such a grouped item (its name, with commas, is not in the
signature and has no annotation) are dropped by a log filter in `tools/docs_hooks.py`;
every other docstring warning still fails the build.
"""

from __future__ import annotations

import re

import griffe

_EXAMPLE_HEADER = re.compile(r"^(\s*)Example:\s*$", re.MULTILINE)
# "  a, b, c,\n    d, e: description" -> "  a, b, c, d, e: description"
_WRAPPED_NAMES = re.compile(r"^(\s+\w+(?:, \w+)*,)\n\s+(\w+(?:, \w+)*:)", re.MULTILINE)


def normalize(text: str) -> str:
    """The docstring text as griffe's Google parser expects it."""
    text = _EXAMPLE_HEADER.sub(r"\1Examples:", text)
    while True:
        joined = _WRAPPED_NAMES.sub(r"\1 \2", text)
        if joined == text:
            return text
        text = joined


class DocstringConventions(griffe.Extension):
    """Rewrites each docstring with `normalize` as it is loaded."""

    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = normalize(obj.docstring.value)

    def on_class_members(self, *, cls: griffe.Class, **kwargs) -> None:
        init = cls.members.get("__init__")
        if init is None or init.is_alias or init.lineno is None:
            return
        for name, member in list(cls.members.items()):
            if (
                not member.is_alias
                and member.is_attribute
                and member.docstring is None
                and member.lineno is not None
                and init.lineno <= member.lineno <= (init.endlineno or init.lineno)
            ):
                del cls.members[name]
