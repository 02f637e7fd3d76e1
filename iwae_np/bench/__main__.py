"""``python -m iwae_np.bench render [--json docs/bench.json] [--readme README.md]``: write the
README's speed table from one bench run's JSON (``python -m iwae_np bench --json FILE``), so the
table is always that run's render (``tests/test_bench.py`` checks it)."""

import argparse
import json
import sys

from .runner import render_readme


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m iwae_np.bench")
    commands = parser.add_subparsers(dest="command", required=True)
    render = commands.add_parser("render", help="write the README's speed table from a run")
    render.add_argument("--json", default="docs/bench.json", help="the run (bench --json FILE)")
    render.add_argument("--readme", default="README.md", help="the README to update")
    args = parser.parse_args(argv)
    try:
        with open(args.json) as f:
            result = json.load(f)
        with open(args.readme) as f:
            readme = f.read()
        updated = render_readme(readme, result)
    except (OSError, ValueError, KeyError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    with open(args.readme, "w") as f:
        f.write(updated)
    print(f"{args.readme}: speed table rendered from {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
