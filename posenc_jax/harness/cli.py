"""The ``posenc`` command: run configs, list what exists, plot results, draw encodings.

```
posenc run CONFIG [--set KEY=VALUE ...] [--out DIR] [--overwrite] [--no-progress] [--debug]
           [--compile-cache DIR] [--system-malloc]
posenc list [schemes|tasks|presets]
posenc plot RESULTS_DIR
posenc viz [OUT_DIR]
```
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main"]


def _cmd_run(args: argparse.Namespace) -> int:
    from posenc_jax.harness.results import markdown_table
    from posenc_jax.harness.runner import run
    from posenc_jax.harness.runtime import keep_freed_memory
    from posenc_jax.harness.sharding import maybe_initialize_distributed

    if not args.system_malloc:
        keep_freed_memory()
    maybe_initialize_distributed()
    records = run(
        args.config,
        compile_cache=args.compile_cache,
        out_dir=args.out,
        overrides=tuple(args.set or ()),
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    print(markdown_table(records))
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from posenc_jax.harness.tasks import TASKS
    from posenc_jax.presets import presets_table_markdown
    from posenc_jax.schemes import SCHEMES

    what = args.what
    if what in (None, "schemes"):
        print("schemes:")
        for name, cls in sorted(SCHEMES.items()):
            doc = (cls.__doc__ or "").strip().splitlines()[0]
            print(f"  {name:12s} {doc}")
    if what in (None, "tasks"):
        print("tasks:")
        for name, cls in sorted(TASKS.items()):
            kind = "decoder" if getattr(cls, "causal", False) else "encoder"
            doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
            print(f"  {name:28s} {kind:8s} {doc}")
    if what in (None, "presets"):
        print("presets:")
        print(presets_table_markdown())
    return 0


def _cmd_plot(args: argparse.Namespace) -> int:
    from posenc_jax.harness.results import RECORDS, read_records
    from posenc_jax.harness.runner import write_reports

    folder = Path(args.results_dir)
    records = read_records(folder / RECORDS)
    if not records:
        raise FileNotFoundError(f"no {RECORDS} with records in {folder}")
    write_reports(folder, records)
    print(f"wrote plots and tables in {folder}")
    return 0


def _cmd_viz(args: argparse.Namespace) -> int:
    from posenc_jax.harness.figures.encodings import draw_all

    paths = draw_all(args.out_dir)
    for path in paths:
        print(path)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="posenc", description="Positional encodings: train short, test long."
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    # Also accepted after the command; SUPPRESS keeps a top-level --debug from being reset.
    debug = dict(action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="run an experiment config")
    p.add_argument("config", help="YAML config file (e.g. configs/quick.yaml)")
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set train.steps=500",
    )
    p.add_argument("--out", help="output folder (default runs/<name>)")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace results of a different config in the output folder",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument(
        "--compile-cache",
        metavar="DIR",
        help="persistent compilation cache folder (a rerun compiles nothing)",
    )
    p.add_argument(
        "--system-malloc",
        action="store_true",
        help="leave the C allocator's settings alone (by default freed blocks up to 1 GiB are "
        "kept for the next step instead of being unmapped; see posenc_jax.harness.runtime)",
    )
    p.add_argument("--debug", **debug)
    p.set_defaults(fn=_cmd_run)
    p = sub.add_parser("list", help="list schemes, tasks and presets")
    p.add_argument("what", nargs="?", choices=["schemes", "tasks", "presets"])
    p.set_defaults(fn=_cmd_list)
    p = sub.add_parser("plot", help="redraw plots and tables of a results folder")
    p.add_argument("results_dir")
    p.add_argument("--debug", **debug)
    p.set_defaults(fn=_cmd_plot)
    p = sub.add_parser("viz", help="draw pictures of every encoding (PNG)")
    p.add_argument("out_dir", nargs="?", default="figures")
    p.add_argument("--debug", **debug)
    p.set_defaults(fn=_cmd_viz)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``posenc`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        code = args.fn(args)
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return code
    except BrokenPipeError:
        # The reader went away (`posenc list | head -1`): stop quietly, as Unix tools do.
        # Later writes and the exit-time flush go to /dev/null (Python docs, "Note on SIGPIPE").
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a tool the signal ended
    except KeyboardInterrupt:
        print(
            "posenc: interrupted; finished runs are saved, rerun the same command to resume",
            file=sys.stderr,
        )
        return 130
    except (ValueError, FileNotFoundError) as e:
        if getattr(args, "debug", False):
            traceback.print_exc()
        print(f"posenc: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
