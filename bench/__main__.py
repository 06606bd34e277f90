"""`make bench`: run every benchmark in turn (or the ones named: `python -m bench import_bench`)."""

from __future__ import annotations

import importlib
import sys
import time

BENCHMARKS = [
    "import_bench",
    "segments_bench",
    "render",
    "engine_bench",
    "tick_bench",
    "tracking",
    "reports_bench",
    "designer_bench",
]


def main(argv: list[str]) -> int:
    names = argv or BENCHMARKS
    failures = 0
    for name in names:
        print(f"\n=== bench.{name} ===", flush=True)
        started = time.perf_counter()
        try:
            module = importlib.import_module(f"bench.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"bench.{name}":
                raise
            print(f"no such benchmark: bench/{name}.py")
            failures += 1
            continue
        try:
            module.main()
        except Exception as exc:  # one broken benchmark must not hide the others' figures
            failures += 1
            print(f"FAILED: {type(exc).__name__}: {exc}")
        print(f"--- {name} took {time.perf_counter() - started:.1f} s", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
