"""``python -m jaxdet.parity``: the parity table of every jaxdet function that has a PyTorch reference.

Options: ``--filter SUBSTRING`` keeps matching rows; ``--seed``; ``--json PATH`` also writes the dicts.
Exits with status 1 when any row is outside its tolerance.
"""

from __future__ import annotations

import argparse
import json
import sys

from jaxdet.parity.core import format_table, run_case
from jaxdet.parity.registry import all_cases


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jaxdet.parity", description=__doc__.splitlines()[0])
    parser.add_argument("--filter", default="", help="only rows whose function name contains this")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random inputs and cotangents")
    parser.add_argument("--json", default=None, help="also write the reports as JSON to this path")
    args = parser.parse_args(argv)

    reports = []
    for case in all_cases():
        if args.filter in case.name:
            reports.append(run_case(case, seed=args.seed))
            print(f"  {case.name}: {'ok' if reports[-1].passed() else 'FAIL'}", file=sys.stderr, flush=True)
    print(format_table(reports))
    if args.json:
        with open(args.json, "w") as f:
            json.dump([report.as_dict() for report in reports], f, indent=2)
    failed = [report.name for report in reports if not report.passed()]
    if failed:
        print(f"\n{len(failed)} outside tolerance: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
