"""The command-line interface: ``python -m iwae_np <command>`` (or ``iwae-np <command>``).

Bad arguments print one line to stderr and exit with code 2, never a traceback.
"""

import argparse
import sys

import numpy as np


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's own errors: one line, exit code 2
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(2)


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def run_bounds_demo(args):
    """ELBO and L_k for k = 1, 5, 50 on a small untrained model: the bound tightens with k."""
    from . import VAE, elbo, iwae_bound

    rng = np.random.default_rng(args.seed)
    model = VAE(x_dim=16, z_dim=2, hidden=(32,))
    x = (rng.random((args.n, 16)) < 0.3).astype(float)
    theta = model.init(seed=args.seed, x=x)
    print(f"{model}\n{args.n} random binary points; bounds averaged over points (nats)")
    print(f"{'k':>5} {'ELBO':>10} {'L_k (IWAE)':>12}")
    for k in (1, 5, 50):
        log_w = model.log_weights(theta, x, model.draw_eps(rng, k, args.n))
        print(f"{k:>5} {elbo(log_w).mean():>10.3f} {iwae_bound(log_w).mean():>12.3f}")
    return 0


def build_parser():
    parser = _Parser(prog="iwae_np", description="Variational inference and the IWAE bound, "
                     "from scratch in NumPy.")
    commands = parser.add_subparsers(dest="command", metavar="command", parser_class=_Parser)
    demo = commands.add_parser("demo", help="the main job: compute and compare bounds")
    demo.add_argument("--n", type=_positive_int, default=100, help="number of data points")
    demo.add_argument("--seed", type=int, default=0, help="random seed")
    demo.set_defaults(run=run_bounds_demo)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return args.run(args)
    except (ValueError, FileNotFoundError) as error:  # bad input named by the package: one line
        print(f"iwae_np {args.command}: error: {error}", file=sys.stderr)
        return 2
