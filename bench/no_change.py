"""How long `mpt run` takes when nothing changed (the three demo domains): target <= 15 s.

    mpt domain prepare retail manufacturing medical      # once
    python bench/no_change.py [--home DIR] [--repeat 3]

The first `mpt run` in a fresh home tunes everything (minutes); then `mpt run` is timed
`--repeat` times as a user runs it (a new process each time, wall clock), next to the
parts it is made of, each timed in its own process: the interpreter and imports of the
no-change path, the service preflight, and the per-domain decision (DVC status, registry
lookup, cached backbone sha256). `mpt version` is the floor of any command.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MPT = [sys.executable, "-m", "cli"]
PARTS = {
    "imports of the no-change path": (
        "import flows.pipeline, flows.domains, flows.preflight, registry, cli.commands.run"
    ),
    "preflight (registry, store, DVC remote)": (
        "from flows.settings import load_settings; from flows.preflight import check_services;"
        "from flows.versioning import find_repo_root; s = load_settings();"
        "import time; t = time.perf_counter(); check_services(s, repo_root=find_repo_root("
        "s.domains_dir)); print(time.perf_counter() - t)"
    ),
    "decision for the 3 domains": (
        "from cli.commands.run import _nothing_changed; from flows.settings import "
        "load_settings; import time; s = load_settings(); t = time.perf_counter(); "
        "r = _nothing_changed(s, None); assert r, 'something changed'; "
        "print(time.perf_counter() - t)"
    ),
}


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    out = subprocess.run(argv, env=env, cwd=REPO, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{out.stdout[-2000:]}{out.stderr[-2000:]}")
    return time.perf_counter() - started, out.stdout


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", help="MPT_HOME to use (default: a fresh temp dir)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    home = Path(args.home or tempfile.mkdtemp(prefix="mpt-no-change-"))
    env = {**os.environ, "MPT_HOME": str(home), "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    print(f"MPT_HOME={home}; torch threads: 1 (OMP_NUM_THREADS=1); {os.cpu_count()} CPUs")
    seconds, out = timed([*MPT, "run"], env)
    print(f"first run: {seconds:.1f} s")
    runs = []
    for _ in range(args.repeat):
        seconds, out = timed([*MPT, "run"], env)
        assert out.count("skipped") == 3, out
        runs.append(seconds)
    floor = [timed([*MPT, "version"], env)[0] for _ in range(args.repeat)]
    print()
    print("| what | seconds (median of runs) |")
    print("| --- | ---: |")
    print(
        f"| `mpt run`, nothing changed | {statistics.median(runs):.1f} "
        f"(runs: {', '.join(f'{s:.1f}' for s in runs)}) |"
    )
    print(f"| `mpt version` (interpreter + CLI) | {statistics.median(floor):.1f} |")
    for label, code in PARTS.items():
        values = []
        for _ in range(args.repeat):
            wall, out = timed([sys.executable, "-c", code], env)
            inner = out.strip().splitlines()
            values.append(float(inner[-1]) if inner else wall)
        print(f"| {label} | {statistics.median(values):.2f} |")


if __name__ == "__main__":
    main()
