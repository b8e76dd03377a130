"""`dsj`: run, validate, and the worker/combine entry points used inside pods.

Exit codes: datasetjob.errors.ExitCode (0 success, 1 the run failed, 2 a bad spec or usage,
75 another `dsj run` holds the run's lease, 78 a generator config error, 130 interrupted).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

from datasetjob.errors import ExitCode, GeneratorConfigError, OptionError, SpecError, StorageError

if TYPE_CHECKING:  # the commands import what they use when they run: `dsj` starts with little loaded
    from datasetjob.spec.model import DatasetJobSpec


def _spec(path: str, rules: bool = True) -> DatasetJobSpec:
    from datasetjob.spec.documents import load_spec_file

    return load_spec_file(path, rules=rules)


def _check_generator(spec: DatasetJobSpec, spec_path: str) -> None:
    """What the schema cannot know: the function imports (with the runner's search path)."""
    if not spec.generator.function:
        return
    from datasetjob.worker.generator import load_function

    for entry in (os.getcwd(), os.path.dirname(os.path.abspath(spec_path))):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    load_function(spec.generator.function)


def _notes(spec: DatasetJobSpec) -> None:
    """Things that are valid but would surprise: said once, on stderr."""
    items = spec.fields.items
    product = items.product or {}
    if len(product) > 1 and items.product_order is None and list(product) != sorted(product):
        print(
            f"note: spec.items.product keys run in the written order {list(product)} here, but a "
            f"Kubernetes API server sorts them ({sorted(product)}); add productOrder: "
            f"[{', '.join(product)}] to keep this order in a cluster too",
            file=sys.stderr,
        )


def _print_problems(exc: Exception, path: str) -> int:
    from datasetjob.redaction import redact_text

    problems = exc.problems if isinstance(exc, SpecError) else [str(exc)]
    if isinstance(exc, (OptionError, StorageError)):
        print(f"{path}: cannot run", file=sys.stderr)
    else:
        print(f"{path}: invalid DatasetJob", file=sys.stderr)
    for problem in problems:
        print(f"  {redact_text(problem)}", file=sys.stderr)
    return ExitCode.BAD_SPEC


def _check_universe(spec: DatasetJobSpec, run_id: str) -> int:
    """Every item check, streaming (only the ids are kept); a command's templates are checked
    against every shard's ids. Returns the number of items."""
    from datasetjob.store.universe import check_universe, ids_by_shard

    total = check_universe(spec)
    if spec.generator.command:
        from datasetjob.worker.command import check_command

        check_command(spec, ids_by_shard(spec, total), run_id)
    return total


def cmd_validate(args: argparse.Namespace) -> int:
    try:
        spec = _spec(args.file)
        _check_generator(spec, args.file)
        from datasetjob.spec.model import run_id

        count = _check_universe(spec, run_id(spec.raw_spec))
        _notes(spec)
    except (SpecError, GeneratorConfigError) as exc:
        return _print_problems(exc, args.file)
    print(f"{args.file}: valid — {count} items in {spec.shards} shards")
    return ExitCode.OK


def _check_run_options(args: argparse.Namespace) -> None:
    """Options a run cannot start with: refused before anything starts, like a bad spec."""
    from datasetjob.local.options import check_output_option, check_redis_url_option

    if args.output is not None:
        args.output = check_output_option(args.output)
    if args.redis_url is not None:
        check_redis_url_option(args.redis_url)


def cmd_run(args: argparse.Namespace) -> int:
    from datasetjob.local.runner import LocalRunner, LocalRunOptions

    try:
        spec = _spec(args.file)
        _check_run_options(args)
        _check_generator(spec, args.file)
        if args.sample is not None:
            return _preview(spec, args)
        opts = LocalRunOptions(
            workers=args.workers,
            output=args.output,
            resume=args.resume,
            retry_failed=args.retry_failed,
            cache_dir=args.cache_dir,
            redis_url=args.redis_url,
            workdir=args.workdir,
            quiet=args.quiet,
            spec_path=args.file,
        )
        runner = LocalRunner(spec, opts)
        total = _check_universe(runner.spec, runner.run_id)  # fail on bad items before anything is written
        from datasetjob.store.backends import check_writable

        check_writable(runner.store, "--output" if args.output else "spec.output.uri")
        _notes(spec)
    except (SpecError, GeneratorConfigError, StorageError) as exc:
        return _print_problems(exc, args.file)
    return runner.run(total)


def _preview(spec: DatasetJobSpec, args: argparse.Namespace) -> int:
    """`dsj run --sample N`: exit 0 when every sampled item gave rows, 1 when one failed."""
    from datasetjob.local.preview import run_preview, show_preview

    if args.sample < 1:
        raise OptionError(["--sample: give the number of items to try, at least 1"])
    if args.cache_dir:
        os.environ["DSJ_EMBEDDED_CACHE_DIR"] = os.path.abspath(args.cache_dir)
    if args.redis_url is not None:
        os.environ["DSJ_REDIS_URL"] = args.redis_url
    preview = run_preview(spec, args.sample)
    show_preview(preview, spec, args.sample)
    return ExitCode.FAILED if preview.failures else ExitCode.OK


def cmd_worker(args: argparse.Namespace) -> int:
    from datasetjob.worker.entrypoints import worker_main

    try:
        spec = _spec(args.spec or os.environ.get("DSJ_SPEC_FILE", "/etc/datasetjob/datasetjob.json"), rules=False)
    except SpecError as exc:
        _print_problems(exc, args.spec or "spec")
        return ExitCode.DO_NOT_RETRY
    return worker_main(spec, args.index, args.run_id)


def cmd_combine(args: argparse.Namespace) -> int:
    from datasetjob.worker.entrypoints import combine_main

    try:
        spec = _spec(args.spec or os.environ.get("DSJ_SPEC_FILE", "/etc/datasetjob/datasetjob.json"), rules=False)
    except SpecError as exc:
        _print_problems(exc, args.spec or "spec")
        return ExitCode.DO_NOT_RETRY
    return combine_main(spec, args.run_id)


def cmd_plan(args: argparse.Namespace) -> int:
    from datasetjob.contract import RETRY_FAILED_ITEMS_ENV
    from datasetjob.worker.entrypoints import plan_main

    try:
        spec = _spec(args.spec or os.environ.get("DSJ_SPEC_FILE", "/etc/datasetjob/datasetjob.json"), rules=False)
    except SpecError as exc:
        _print_problems(exc, args.spec or "spec")
        return ExitCode.DO_NOT_RETRY
    return plan_main(spec, args.run_id, os.environ.get(RETRY_FAILED_ITEMS_ENV) == "1")


def build_parser(plugins: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dsj", description="Parallel dataset generation from a DatasetJob spec.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run a DatasetJob on this machine")
    p.add_argument("file")
    p.add_argument("--workers", type=int, help="shards at once (default: spec.parallelism, at most one per CPU)")
    p.add_argument("--output", help="output URI (file:// or s3://; default: spec.output.uri or ./datasets/NAME)")
    p.add_argument("--resume", action="store_true", help="reuse committed shards and checkpointed items")
    p.add_argument(
        "--retry-failed", action="store_true", help="like --resume, and rerun the failed items of committed shards"
    )
    p.add_argument("--cache-dir", help="embedded cache directory (default: ~/.cache/datasetjob/embedded-cache)")
    p.add_argument("--redis-url", help="use this Redis as the shared cache")
    p.add_argument("--workdir", help="where logs go (default: ./datasets/NAME)")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.add_argument(
        "--sample",
        type=int,
        metavar="N",
        help="preview: run the generator on N items spread across the universe and print their rows; publishes nothing",
    )
    p.set_defaults(fn=cmd_run)

    p = sub.add_parser("validate", help="check a spec (schema, rules, items, generator import)")
    p.add_argument("file")
    p.set_defaults(fn=cmd_validate)

    p = sub.add_parser("worker", help="run one shard (what a generator pod runs)")
    p.add_argument("--spec", help="DatasetJob document (default: $DSJ_SPEC_FILE)")
    p.add_argument("--index", type=int, help="shard index (default: $JOB_COMPLETION_INDEX)")
    p.add_argument("--run-id", help="run id (default: $DSJ_RUN_ID, else the spec hash)")
    p.set_defaults(fn=cmd_worker)

    p = sub.add_parser("combine", help="combine a run's shards and publish (what the combine pod runs)")
    p.add_argument("--spec", help="DatasetJob document (default: $DSJ_SPEC_FILE)")
    p.add_argument("--run-id", help="run id (default: $DSJ_RUN_ID, else the spec hash)")
    p.set_defaults(fn=cmd_combine)

    p = sub.add_parser("plan", help="work out which items a run must generate (what the plan pod runs)")
    p.add_argument("--spec", help="DatasetJob document (default: $DSJ_SPEC_FILE)")
    p.add_argument("--run-id", help="run id (default: $DSJ_RUN_ID, else the spec hash)")
    p.set_defaults(fn=cmd_plan)

    # Cluster commands (operator, status, logs, ...) come from the operator distribution extra,
    # through an entry point, so this package never imports the control plane.
    if plugins:
        from importlib.metadata import entry_points

        for ep in entry_points(group="datasetjob.cli"):
            ep.load()(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # Pods start many workers at once: they need no cluster commands, so skip looking for them.
    parser = build_parser(plugins=not (argv and argv[0] in ("worker", "combine", "plan")))
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "passthrough", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra
    code: int = args.fn(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
