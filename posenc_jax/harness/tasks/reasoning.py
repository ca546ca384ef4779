"""Kazemnejad et al. 2023's two reasoning tasks: polynomial evaluation and LEGO.

Both are decoder tasks (``<bos> prompt <sep> answer <eos>``, loss on the answer and
``<eos>``, headline exact match; see `posenc_jax.harness.tasks.base`). The reference
writes natural-language templates in t5-base tokens ("Evaluate at x = - 2 in ... ? The
answer is 9."); here every number, variable and operator is one symbol and the template
words are dropped, as the other decoder tasks of this package do. The training lengths
(1..8, LEGO 2..8) and test lengths (9..16) are the reference's ``*_tr8_ts16`` splits.

References: Kazemnejad et al. 2023, "The Impact of Positional Encoding on Length
Generalization in Transformers" (NeurIPS, arXiv 2305.19466), tasks "polynomial evaluation"
and "LEGO"; McGill-NLP/length-generalization @d06170e, scripts/dataset_builders/
make_poly_dataset.py and make_lego_dataset.py, src/data/data_instance_processor/
poly_instance_processor.py and lego_instance_processor.py; Zhang et al. 2022, "Unveiling
Transformers with LEGO" (arXiv 2206.04301).
"""

import numpy as np

from posenc_jax.harness.tasks.base import (
    DIGITS,
    NUM_SPECIAL,
    SEP,
    DecoderTask,
    check_int,
)

_LETTERS = tuple("abcdefghijklmnopqrstuvwxyz")


def _check_prompts(prompts: np.ndarray, width: int, *, task: str) -> np.ndarray:
    prompts = np.asarray(prompts)
    if prompts.ndim != 2 or prompts.shape[1] != width:
        raise ValueError(f"{task}: prompts must be [B, {width}]; got shape {prompts.shape}")
    if not np.all(prompts[:, -1] == SEP):
        raise ValueError(f"{task}: every prompt row must end with <sep> (id {SEP})")
    return prompts


class Polynomial(DecoderTask):
    """Evaluate a polynomial at a small integer, modulo 10.

    Symbols: digits ``"0"`` .. ``"9"``, the negative numbers ``"-3"``, ``"-2"``, ``"-1"``,
    then ``"x"``, ``"="``, ``"in"``, ``"*"``, ``"**"`` and ``"+"``. At task length ``n``
    (the number of terms) the prompt is ``x = v in c_1 * x ** d_1 + ... + c_n * x ** d_n
    <sep>`` (``6n + 4`` tokens) with, as the reference builder draws them, coefficients
    ``c_i`` uniform in -3..3, degrees ``d_i`` uniform in 0..3 and one ``v`` uniform in
    -2..2; the answer is one digit, ``sum(c_i * v ** d_i) % modulus`` with Python's ``%``
    (never negative; ``modulus`` 10 as the reference's ``modulo_factor``). Terms are summed
    as written (no merging of equal degrees). Reference ranges: train 1..8 terms, test
    9..16. The answers are not uniform (``v = 0`` keeps only the constant terms): the
    input-blind best guess, ``0``, is right for about 27% of the answers at 1 term, 12% at
    9 terms and 11% at 16.

    The reference writes a negative number as two tokens, ``- 3``, and puts the template
    around it; one symbol per number is the only change of content.

    Example:
      ``x = -2 in 3 * x ** 0 + -1 * x ** 2`` is 3 - 4 = -1, answer ``9``:

      >>> import numpy as np
      >>> task = Polynomial()
      >>> words = "x = -2 in 3 * x ** 0 + -1 * x ** 2".split()
      >>> prompt = np.append(task.encode(words), 3)[None]  # ... <sep>
      >>> task.decode(task.solve(prompt)[0])
      ['9']

    References: Kazemnejad et al. 2023 (arXiv 2305.19466), task "polynomial evaluation";
    McGill-NLP/length-generalization @d06170e, make_poly_dataset.py ``generate_data``
    (L38-L46: ``coeffs = np.random.randint(-3, 4, ...)``, ``degrees = np.random.randint(0,
    4, ...)``, ``x = np.random.randint(-2, 3)``, ``ans = sum([coeffs[i] * x **
    degrees[i] ...])``; L53 ``"cat": num_terms``) and poly_instance_processor.py
    (``answer % self.modulo_factor``, ``modulo_factor: 10`` in configs/data/s2s_poly.jsonnet).
    """

    name = "polynomial"
    train_lengths = (1, 8)
    eval_lengths = tuple(range(9, 17))

    def __init__(self, *, modulus: int = 10) -> None:
        self.modulus = check_int("modulus", modulus, minimum=2)
        if self.modulus > 10:
            raise ValueError(
                f"polynomial answers are one digit: modulus must be in 2..10; got modulus={modulus}"
            )
        self.symbols = (*DIGITS, "-3", "-2", "-1", "x", "=", "in", "*", "**", "+")

    def _number_id(self, values: np.ndarray) -> np.ndarray:
        """Ids of integers in -3..9 (``-k`` is the symbol ``"-k"``)."""
        return np.where(values >= 0, NUM_SPECIAL + values, NUM_SPECIAL + 10 + (3 + values))

    def _number_value(self, ids: np.ndarray) -> np.ndarray:
        """Inverse of `_number_id`; raises ValueError for an id that is not a number."""
        values = ids.astype(np.int64) - NUM_SPECIAL
        if np.any((values < 0) | (values > 12)):
            raise ValueError(f"{self.name}: a coefficient, degree or x slot holds no number")
        return np.where(values < 10, values, values - 13)

    def prompt_length(self, length: int) -> int:
        return 6 * length + 4

    def output_length(self, length: int) -> int:
        return 1

    def sample_prompts(self, rng: np.random.Generator, batch_size: int, length: int) -> np.ndarray:
        coeffs = rng.integers(-3, 4, size=(batch_size, length))
        degrees = rng.integers(0, 4, size=(batch_size, length))
        x = rng.integers(-2, 3, size=batch_size)
        prompts = np.empty((batch_size, 6 * length + 4), dtype=np.int32)
        prompts[:, 0] = self.token_id("x")
        prompts[:, 1] = self.token_id("=")
        prompts[:, 2] = self._number_id(x)
        prompts[:, 3] = self.token_id("in")
        terms = np.empty((batch_size, length, 6), dtype=np.int32)  # [B, n, c * x ** d +]
        terms[:, :, 0] = self._number_id(coeffs)
        terms[:, :, 1] = self.token_id("*")
        terms[:, :, 2] = self.token_id("x")
        terms[:, :, 3] = self.token_id("**")
        terms[:, :, 4] = NUM_SPECIAL + degrees
        terms[:, :, 5] = self.token_id("+")
        prompts[:, 4:] = terms.reshape(batch_size, 6 * length)
        prompts[:, -1] = SEP  # replaces the last term's "+"
        return prompts

    def solve(self, prompts: np.ndarray) -> np.ndarray:
        prompts = np.asarray(prompts)
        length = (prompts.shape[-1] - 4) // 6 if prompts.ndim == 2 else 0
        prompts = _check_prompts(prompts, 6 * length + 4, task=self.name)
        x = self._number_value(prompts[:, 2])  # [B]
        terms = prompts[:, 4:].reshape(prompts.shape[0], length, 6)  # [B, n, c * x ** d +]
        coeffs = self._number_value(terms[:, :, 0])
        degrees = self._number_value(terms[:, :, 4])
        if np.any((degrees < 0) | (degrees > 3)):
            raise ValueError(f"{self.name}: degrees must be 0..3")
        total = np.sum(coeffs * x[:, None] ** degrees, axis=1)  # exact: |total| <= 24 n
        return (NUM_SPECIAL + np.mod(total, self.modulus))[:, None].astype(np.int32)


class Lego(DecoderTask):
    """LEGO: resolve a chain of sign relations between variables.

    Symbols: the letters ``"a"`` .. ``"z"``, then ``"="``, ``"+"``, ``"-"``, ``"+1"``,
    ``"-1"``, ``","`` and ``"?"``. At task length ``n`` (the number of variables, 2..26) the
    ``n`` variables are distinct random letters ``v_1 .. v_n`` with uniform values in
    {-1, +1}; the prompt is the chain ``v_1 = ±1 , v_2 = ± v_1 , ... , v_n = ± v_{n-1} ? q
    <sep>`` (``5n + 1`` tokens), the sign of clause ``i`` being ``+`` where ``v_i`` equals
    ``v_{i-1}``, and the answer the value of the queried variable ``q`` (``"+1"`` or
    ``"-1"``; input-blind chance 0.5). As the reference, the query is one of the second half
    of the chain: index ``n // 2`` .. ``n - 1`` (0-based) for even ``n``, ``n // 2 + 1`` ..
    ``n - 1`` for odd ``n``, so every length has ``n // 2`` possible queries (uniform here;
    the reference writes each chain once per query). ``permute_clauses=True`` shuffles the
    clauses (the reference's ``_perm`` splits; not in its Figure 1).

    Reference ranges: train 2..8 variables, test 9..16. The builder's default minimum is 4
    and the minimum used for the paper's data is not recorded; it cannot be 1, since the
    builder divides by ``length // 2``. 2 is the shortest chain with a query.

    Example:
      ``a = +1 , b = - a , c = + b ? c`` -> ``-1``:

      >>> import numpy as np
      >>> task = Lego()
      >>> words = "a = +1 , b = - a , c = + b ? c".split()
      >>> prompt = np.append(task.encode(words), 3)[None]  # ... <sep>
      >>> task.decode(task.solve(prompt)[0])
      ['-1']

    References: Kazemnejad et al. 2023 (arXiv 2305.19466), task "LEGO";
    McGill-NLP/length-generalization @d06170e, make_lego_dataset.py ``generate_data``
    (L68 ``NICE_VALUES = ["-1", "+1"]``, L72-L73 values and the letter permutation, L78-L82
    the clauses ``f"{vars[i]} = {modifier} {vars[i-1]}"``, L86-L91 the queried indices) and
    ``main`` (``num_examples_per_bin / (length // 2)`` chains per length); Zhang et al. 2022
    (arXiv 2206.04301).
    """

    name = "lego"
    train_lengths = (2, 8)
    eval_lengths = tuple(range(9, 17))

    def __init__(self, *, permute_clauses: bool = False) -> None:
        if not isinstance(permute_clauses, bool):
            raise ValueError(f"permute_clauses must be True or False; got {permute_clauses!r}")
        self.permute_clauses = permute_clauses
        self.symbols = (*_LETTERS, "=", "+", "-", "+1", "-1", ",", "?")

    def check_length(self, length: int) -> int:
        length = check_int("length", length, minimum=2)
        if length > len(_LETTERS):
            raise ValueError(
                f"lego variables are distinct letters: length must be in 2..26; got length={length}"
            )
        return length

    def prompt_length(self, length: int) -> int:
        return 5 * length + 1

    def output_length(self, length: int) -> int:
        return 1

    def sample_prompts(self, rng: np.random.Generator, batch_size: int, length: int) -> np.ndarray:
        n = length
        letters = np.broadcast_to(np.arange(len(_LETTERS)), (batch_size, len(_LETTERS)))
        names = rng.permuted(letters, axis=1)[:, :n]  # [B, n] distinct letters
        values = rng.integers(0, 2, size=(batch_size, n))  # 0: -1, 1: +1
        first_query = n // 2 if n % 2 == 0 else n // 2 + 1
        query = rng.integers(first_query, n, size=batch_size)
        clauses = np.empty((batch_size, n, 5), dtype=np.int32)  # [B, n, v = s w ,]
        clauses[:, :, 0] = NUM_SPECIAL + names
        clauses[:, :, 1] = self.token_id("=")
        same = values[:, 1:] == values[:, :-1]
        clauses[:, 1:, 2] = np.where(same, self.token_id("+"), self.token_id("-"))
        clauses[:, 1:, 3] = NUM_SPECIAL + names[:, :-1]
        clauses[:, 1:, 4] = self.token_id(",")
        # The first clause is "v = ±1 ,": shift its value and comma one slot left.
        clauses[:, 0, 2] = np.where(values[:, 0] == 1, self.token_id("+1"), self.token_id("-1"))
        clauses[:, 0, 3] = self.token_id(",")
        clauses[:, 0, 4] = -1  # dropped below
        if self.permute_clauses:
            order = rng.permuted(np.broadcast_to(np.arange(n), (batch_size, n)), axis=1)
            clauses = np.take_along_axis(clauses, order[:, :, None], axis=1)
        flat = clauses.reshape(batch_size, 5 * n)
        flat = flat[flat >= 0].reshape(batch_size, 5 * n - 1)  # every clause ends with ","
        prompts = np.empty((batch_size, 5 * n + 1), dtype=np.int32)
        prompts[:, : 5 * n - 2] = flat[:, :-1]  # without the last ","
        prompts[:, 5 * n - 2] = self.token_id("?")
        prompts[:, 5 * n - 1] = NUM_SPECIAL + names[np.arange(batch_size), query]
        prompts[:, 5 * n] = SEP
        return prompts

    def solve(self, prompts: np.ndarray) -> np.ndarray:
        prompts = np.asarray(prompts)
        n = (prompts.shape[-1] - 1) // 5 if prompts.ndim == 2 else 0
        prompts = _check_prompts(prompts, 5 * n + 1, task=self.name)
        answers = np.empty((prompts.shape[0], 1), dtype=np.int32)
        for row, ids in enumerate(prompts):
            answers[row, 0] = self.token_id(self._resolve(self.decode(ids[:-1])))
        return answers

    def _resolve(self, words: list[str]) -> str:
        """The value (``"+1"`` / ``"-1"``) of the queried variable of one prompt's words."""
        if len(words) < 3 or words[-2] != "?":
            raise ValueError(f"{self.name}: a prompt must end with '? variable <sep>'")
        clauses = " ".join(words[:-2]).split(" , ")
        known: dict[str, int] = {}
        relations: dict[str, tuple[int, str]] = {}
        for clause in clauses:
            parts = clause.split()
            if len(parts) == 3 and parts[1] == "=" and parts[2] in ("+1", "-1"):
                known[parts[0]] = int(parts[2])
            elif len(parts) == 4 and parts[1] == "=" and parts[2] in ("+", "-"):
                relations[parts[0]] = (1 if parts[2] == "+" else -1, parts[3])
            else:
                raise ValueError(f"{self.name}: cannot read the clause {clause!r}")
        while relations:  # any clause order (permute_clauses)
            ready = [v for v, (_, w) in relations.items() if w in known]
            if not ready:
                raise ValueError(f"{self.name}: the clauses do not resolve: {clauses}")
            for v in ready:
                sign, w = relations.pop(v)
                known[v] = sign * known[w]
        if words[-1] not in known:
            raise ValueError(f"{self.name}: the queried variable {words[-1]!r} is not defined")
        return "+1" if known[words[-1]] > 0 else "-1"


REASONING_TASKS: tuple[type[DecoderTask], ...] = (Polynomial, Lego)
