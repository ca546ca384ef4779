"""Lists the longest functions of the given folders (body lines, docstring excluded).

Usage: python tools/function_lengths.py posenc_jax [--top 20]
"""

from __future__ import annotations

import argparse
import ast
import pathlib


def function_lengths(roots: list[str]) -> list[tuple[int, str]]:
    """(body lines, "path:name") for every function under ``roots``, longest first."""
    rows = []
    for root in roots:
        for path in sorted(pathlib.Path(root).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    continue
                body = node.body
                if (
                    body
                    and isinstance(body[0], ast.Expr)
                    and isinstance(body[0].value, ast.Constant)
                ):
                    body = body[1:]
                if body:
                    rows.append((body[-1].end_lineno - body[0].lineno + 1, f"{path}:{node.name}"))
    return sorted(rows, reverse=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roots", nargs="+")
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args()
    rows = function_lengths(args.roots)
    for n, name in rows[: args.top]:
        print(f"{n:5d}  {name}")
    print(f"functions over 50 lines: {sum(n > 50 for n, _ in rows)}")


if __name__ == "__main__":
    main()
