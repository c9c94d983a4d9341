"""Run a command several times in a row with CPU-burning processes beside it.

    python scripts/loaded.py --runs 3 --burners 2 -- pytest -q

A test that only passes on a quiet machine (a race with the clock, a sleep that was
"long enough") fails here. The burners are plain busy loops in child processes; they
are stopped when the runs end, on failure or on Ctrl-C alike. Exit 0 only when every
run passed; each run's result is printed as it ends.
"""

from __future__ import annotations

import argparse
import multiprocessing
import subprocess
import sys


def _burn() -> None:  # pragma: no cover - runs in a child, forever, until terminated
    n = 0
    while True:
        n = (n * 1103515245 + 12345) & 0xFFFFFFFF


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs in a row (default 3)")
    parser.add_argument("--burners", type=int, default=2,
                        help="busy-loop processes beside them (default 2)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command or args.runs < 1 or args.burners < 0:
        parser.error("give --runs >= 1, --burners >= 0 and a command after --")
    burners = [multiprocessing.Process(target=_burn, daemon=True) for _ in range(args.burners)]
    for b in burners:
        b.start()
    results: list[int] = []
    try:
        for i in range(1, args.runs + 1):
            print(f"--- run {i}/{args.runs} with {args.burners} CPU burners: "
                  f"{' '.join(command)}", flush=True)
            code = subprocess.call(command)
            results.append(code)
            print(f"--- run {i}/{args.runs}: {'passed' if code == 0 else f'FAILED ({code})'}",
                  flush=True)
    finally:
        for b in burners:
            b.terminate()
        for b in burners:
            b.join()
    passed = sum(1 for c in results if c == 0)
    print(f"{passed} of {args.runs} runs passed with {args.burners} CPU burners beside them")
    return 0 if passed == args.runs else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
