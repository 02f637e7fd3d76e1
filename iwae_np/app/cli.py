"""The command-line interface: ``python -m iwae_np <command>`` (or ``iwae-np <command>``).

    demo      the main job: train a VAE and IWAEs (k = 5, 50), compare them, compare classic and
              amortized inference on held-out points, write figures
    train     train one model and write a checkpoint (resumable)
    evaluate  test log p(x) at large k and active units (per stochastic layer) of a checkpoint
    compare   classic vs amortized inference with a checkpoint's decoder
    gaps      approximation and amortization gaps on toys whose log p(x) is exact
    bench     speed of the training step, evaluation and inference, side by side with PyTorch
    assignments release | grade | autograde   student copies; grading in isolated workers (one
              notebook, or a class's folder of submissions into grades.csv)
    book      the lessons (executed, with a cache) and the API as a static website that works
              offline (needs the [docs] extra)

Every failure prints one line to stderr, never a traceback, and exits with a code that says
what kind: 1 a training run or classic VI diverged (book: a lesson failed), 2 bad input, 3 not
enough memory, 4 a file-system error (no permission, a read-only or full disk), 130 interrupted.
"""

import argparse
import os
import sys
import time
import warnings

from ..checks import (
    NotWritable,
    TooLarge,
    available_memory,
    check_output_file,
    check_output_folder,
)
from ..data import DATASETS

DEFAULT_OUT = "iwae_np_output"


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's own errors: one line, exit code 2
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(2)


def _int_at_least(minimum):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value}")
        return value

    return parse


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


# Exit codes, as the README states them.
EXIT_OK, EXIT_DIVERGED, EXIT_BAD_INPUT, EXIT_RESOURCES, EXIT_FILES, EXIT_INTERRUPTED = (
    0,
    1,
    2,
    3,
    4,
    130,
)
MAX_K_EVAL = 100_000  # beyond this, log p(x) moves less than its Monte Carlo error, for hours


def _check_training_memory(x_dim, z_dim, hidden, k, batch_size):
    """Refuse, before allocating, a model or step that cannot fit: θ with its gradient and Adam
    state (about 6 copies), and the step's activations and their gradients (about 4 copies of
    k·batch rows over every layer's width), in float64."""
    widths = [x_dim, *hidden, 2 * z_dim, z_dim, *hidden[::-1], x_dim]
    parameters = sum(a * b + b for a, b in zip(widths[:-1], widths[1:], strict=True))
    needed = 8 * (6 * parameters + 4 * k * batch_size * sum(widths))
    available = available_memory()
    if available is not None and needed > available:
        raise MemoryError(
            f"expected a model and step that fit in memory, got one that needs "
            f"about {needed / 2**30:.1f} GiB with {available / 2**30:.1f} GiB "
            f"available (lower --hidden, --k or --batch-size)"
        )


def _existing_file(text):
    if not os.path.isfile(text):
        raise argparse.ArgumentTypeError(f"expected an existing file, got {text!r}")
    return text


def _load_data(args):
    from ..data import load

    return load(args.dataset, seed=args.seed, mnist_path=args.mnist_path)


def _save(fig, out, name):
    import matplotlib.pyplot as plt

    path = os.path.join(out, name)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ------------------------------------------------------------------ demo


def run_demo(args):
    """Load the data, run the experiments, print the tables, write the figures."""
    check_output_folder("out", args.out, create=True)
    if args.k_eval > MAX_K_EVAL:
        raise ValueError(f"k_eval: expected at most {MAX_K_EVAL}, got {args.k_eval}")
    _check_training_memory(784 if args.dataset == "mnist" else 64, args.z_dim, args.hidden, 50, 20)
    from . import experiments as ex
    from . import tables

    started = time.perf_counter()
    epochs = args.epochs if args.epochs is not None else (30 if args.quick else 200)
    data, x_eval = _demo_data(args)

    trained = ex.train_family(
        data,
        ks=(1, 5, 50),
        z_dim=args.z_dim,
        hidden=tuple(args.hidden),
        epochs=epochs,
        lr=args.lr,
        seed=args.seed,
        progress=not args.quiet,
    )
    rows = ex.evaluate_family(
        trained, x_eval, k_eval=args.k_eval, seed=args.seed, progress=not args.quiet
    )
    vae_model, vae = trained[ex.family_label(1)]
    comparison = ex.classic_vs_amortized(
        vae_model, vae.theta, x_eval, steps=500 if args.quick else 2000, seed=args.seed
    )
    ks = [1, 2, 5, 10, 50, 200, 1000]
    curves = ex.bound_curves(trained, x_eval, ks, seed=args.seed)

    print(
        f"\nVAE vs IWAE, same architecture (x-{'-'.join(map(str, args.hidden))}-{args.z_dim}), "
        f"{epochs} epochs, test points: {len(x_eval)}"
    )
    print(tables.family_table(rows, args.k_eval))
    print(f"\nClassic vs amortized inference for {len(x_eval)} new points (the VAE's decoder):")
    print(tables.classic_vs_amortized_table(comparison))

    written = _demo_figures(args, data, x_eval, trained, comparison, ks, curves)
    print("\nfigures:\n  " + "\n  ".join(written))
    print(f"demo finished in {time.perf_counter() - started:.1f} s")
    return 0


def _demo_data(args):
    """The demo's data set and held-out points, announced in one line."""
    data = _load_data(args)
    if data.likelihood != "bernoulli":
        raise ValueError(
            f"dataset: expected a binary image set for the demo (bars, digits, "
            f"mnist), got {args.dataset!r}"
        )
    n_eval = min(len(data.x_test), 100 if args.quick else 500)
    os.makedirs(args.out, exist_ok=True)
    print(
        f"iwae_np demo on {data.name}: {len(data.x_train)} training and {n_eval} held-out "
        f"points, {data.x_dim} pixels; figures go to {os.path.abspath(args.out)}/"
    )
    return data, data.x_test[:n_eval]


def _demo_figures(args, data, x_eval, trained, comparison, ks, curves):
    """Write the demo's four figures to ``args.out``; -> their paths."""
    import numpy as np

    from . import plots

    histories = {label: result.history for label, (_, result) in trained.items()}
    samples = {
        label: model.sample(result.theta, np.random.default_rng(args.seed), 10)[0]
        for label, (model, result) in trained.items()
    }
    return [
        _save(plots.training_curves(histories), args.out, "training_curves.png"),
        _save(plots.bound_vs_k(ks, curves), args.out, "bound_vs_k.png"),
        _save(
            plots.image_grid(
                samples | {"data": x_eval[:10]}, data.image_shape, "samples from each model"
            ),
            args.out,
            "samples.png",
        ),
        _save(
            plots.classic_vs_amortized(*comparison["per_point"]),
            args.out,
            "classic_vs_amortized.png",
        ),
    ]


# ------------------------------------------------------------------ train / evaluate / compare


def run_train(args):
    check_output_file("checkpoint", args.checkpoint)
    _check_training_memory(
        784 if args.dataset == "mnist" else 64, args.z_dim, args.hidden, args.k, args.batch_size
    )
    from ..models import VAE
    from ..train import train

    data = _load_data(args)
    model = VAE(data.x_dim, args.z_dim, hidden=tuple(args.hidden), likelihood=data.likelihood)
    theta = model.init(seed=args.seed, x=data.x_train)
    result = train(
        model,
        theta,
        data,
        objective=args.objective,
        k=args.k,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        clip_norm=args.clip_norm,
        checkpoint=args.checkpoint,
        resume=args.resume,
        progress=not args.quiet,
    )
    last = result.history[-1] if result.history else None
    if last is not None:
        print(
            f"trained {last['epoch']} epochs; test {args.objective}(k={args.k}) "
            f"{last['test_bound']:.3f}; checkpoint {args.checkpoint}"
        )
    return 0


def run_evaluate(args):
    from ..checkpoint import load_model
    from ..evaluate import log_marginal
    from .experiments import layer_active_units
    from .tables import active_units_text

    if args.k > MAX_K_EVAL:
        raise ValueError(f"k: expected at most {MAX_K_EVAL}, got {args.k}")
    model, theta, metadata = load_model(args.checkpoint)
    data = _load_data(args)
    x = data.x_test[: args.points]
    log_px = log_marginal(model, theta, x, k=args.k, seed=args.seed, progress=not args.quiet)
    units = active_units_text(layer_active_units(model, theta, x))
    print(
        f"{model}\ncheckpoint epoch {metadata.get('epoch', 'unknown')}; "
        f"{len(x)} test points of {data.name}"
    )
    print(f"test log p(x) (k={args.k}): {log_px.mean():.3f}   active units: {units}")
    return 0


def run_compare(args):
    from ..checkpoint import load_model
    from . import experiments as ex
    from . import tables

    model, theta, _ = load_model(args.checkpoint)
    data = _load_data(args)
    result = ex.classic_vs_amortized(
        model, theta, data.x_test[: args.points], steps=args.steps, tol=args.tol, seed=args.seed
    )
    print(tables.comparison_lines(result))
    return 0


def run_gaps(args):
    from . import experiments as ex
    from . import tables

    rows = [
        ex.toy_gaps(name, epochs=args.epochs, seed=args.seed, progress=not args.quiet)
        for name in args.toys
    ]
    if args.trained:
        from ..data import bars

        rows.append(ex.trained_model_gaps(bars(n=1000, seed=args.seed), seed=args.seed))
    print(
        "Inference gaps: toys with exact log p(x) (encoder trained for the true decoder)"
        + ("; a trained VAE with log p(x) estimated at k=5000" if args.trained else "")
        + ":"
    )
    print(tables.gaps_table(rows))
    return 0


def run_bench(args):
    import json

    from .. import bench

    if args.json is not None:
        check_output_file("json", args.json, create_folder=False)  # now, not after the run
    result = bench.run(
        repeats=args.repeats,
        rounds=args.rounds,
        quick=args.quick,
        use_torch=not args.no_torch,
        threads=args.threads,
    )
    if args.json is not None:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
        print(f"results written to {args.json}")
    return 0


def run_lessons(args):
    from . import lessons

    written = lessons.release(args.source, args.out)
    print(f"wrote {len(written)} student copies of the lessons under {args.out}")
    return 0


def run_assignments(args):
    from .. import classroom

    if args.action == "autograde":
        from ..classroom.autograde import run as run_autograde

        return run_autograde(args)
    if args.action == "release":
        written = classroom.release(args.source, args.out)
        print(f"wrote {len(written)} student notebooks under {args.out}:")
        for path in written:
            print(f"  {path}")
        return 0
    report = classroom.grade(args.notebook, source=args.source)
    print(report)
    # never next to the student's notebook, which the student controls
    stem = args.report or os.path.splitext(os.path.basename(args.notebook))[0] + "_grade"
    json_path, text_path = report.save(stem)
    print(f"grade report written to {json_path} and {text_path}")
    return 0


def run_book(args):
    """Build the book: execute the lessons (or take them from the cache), render every page."""
    from . import book

    try:
        built = book.build(  # checks every argument before it makes a folder or runs a lesson
            args.out,
            lessons=args.lessons,
            cache=None if args.no_cache else args.cache,
            timeout=args.timeout,
            progress=print,
            solutions=args.solutions,
        )
    except book.LessonFailed as error:  # the lesson's own error, in one line
        print(f"iwae_np book: error: {error}", file=sys.stderr)
        return EXIT_DIVERGED
    except KeyboardInterrupt:
        print("iwae_np book: interrupted; the book in --out is as it was", file=sys.stderr)
        return EXIT_INTERRUPTED
    except ImportError as error:  # nbconvert, latex2mathml...: the [docs] extra
        if error.name not in book.DOCS_MODULES:
            raise
        print(
            f'iwae_np book: error: expected the [docs] extra (pip install -e ".[docs]"), '
            f"got no {error.name or error}",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    print(f"open {os.path.abspath(built.out / 'index.html')} in a browser (no server needed)")
    return 0


# ------------------------------------------------------------------ the parser


def build_parser():
    parser = _Parser(
        prog="iwae_np",
        description="Variational inference and the IWAE bound, from scratch in NumPy.",
    )
    commands = parser.add_subparsers(dest="command", metavar="command", parser_class=_Parser)

    def common(sub, dataset_default="bars"):
        sub.add_argument(
            "--dataset",
            choices=DATASETS,
            default=dataset_default,
            help=f"data set (default {dataset_default})",
        )
        sub.add_argument("--mnist-path", help="folder with the MNIST IDX files (--dataset mnist)")
        sub.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
        sub.add_argument("--quiet", action="store_true", help="no progress bars")

    def architecture(sub):
        sub.add_argument("--z-dim", type=_int_at_least(1), default=10, help="latent size")
        sub.add_argument(
            "--hidden",
            type=_int_at_least(1),
            nargs="+",
            default=[64, 64],
            help="hidden layer sizes (default 64 64)",
        )
        sub.add_argument("--lr", type=_positive_float, default=1e-3, help="Adam step size")

    demo = commands.add_parser("demo", help="the main job: VAE vs IWAE, classic vs amortized")
    common(demo)
    architecture(demo)
    demo.add_argument("--quick", action="store_true", help="a short run (under a minute)")
    demo.add_argument(
        "--epochs", type=_int_at_least(0), help="epochs (default 200; 30 with --quick)"
    )
    demo.add_argument(
        "--k-eval",
        type=_int_at_least(1),
        default=5000,
        help="samples for test log p(x) (default 5000)",
    )
    demo.add_argument("--out", default=DEFAULT_OUT, help=f"figure folder (default {DEFAULT_OUT})")
    demo.set_defaults(run=run_demo)

    train = commands.add_parser("train", help="train one model, with checkpoints")
    common(train)
    architecture(train)
    train.add_argument("--objective", choices=("elbo", "iwae"), default="iwae")
    train.add_argument("--k", type=_int_at_least(1), default=5, help="samples per point")
    train.add_argument("--epochs", type=_int_at_least(0), default=20)
    train.add_argument("--batch-size", type=_int_at_least(1), default=20)
    train.add_argument("--clip-norm", type=_positive_float, help="gradient-norm clipping")
    train.add_argument("--checkpoint", default=os.path.join(DEFAULT_OUT, "model.npz"))
    train.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    train.set_defaults(run=run_train)

    bench = commands.add_parser("bench", help="speed, side by side with PyTorch if installed")
    bench.add_argument("--repeats", type=_int_at_least(1), default=15, help="timings per round")
    bench.add_argument(
        "--rounds", type=_int_at_least(1), default=3, help="alternations per workload"
    )
    bench.add_argument("--quick", action="store_true", help="fewer points for W3")
    bench.add_argument("--no-torch", action="store_true", help="skip the PyTorch reference")
    bench.add_argument(
        "--threads", type=_int_at_least(1), help="threads per side (default: all cores)"
    )
    bench.add_argument("--json", help="also write the results to this file")
    bench.set_defaults(run=run_bench)

    assignments = commands.add_parser(
        "assignments", help="release student copies, grade submissions"
    )
    actions = assignments.add_subparsers(
        dest="action", metavar="action", parser_class=_Parser, required=True
    )
    release = actions.add_parser(
        "release", help="student copies: solutions and hidden tests removed"
    )
    release.add_argument("source", help="folder of assignment notebooks (e.g. lessons/assignments)")
    release.add_argument("out", help="folder to write the student copies to")
    grade = actions.add_parser("grade", help="run a submitted notebook and score its graded cells")
    grade.add_argument("notebook", type=_existing_file, help="a submitted .ipynb")
    grade.add_argument(
        "--source",
        type=_existing_file,
        required=True,
        help="the original assignment .ipynb: its tests (hidden ones too), points and setup "
        "cells are the ones that run",
    )
    grade.add_argument(
        "--report",
        help="file stem for the JSON and text report (default: NAME_grade in this folder)",
    )
    autograde = actions.add_parser(
        "autograde", help="grade a folder of submissions in isolated workers: grades.csv, feedback"
    )
    from ..classroom.autograde import add_arguments as add_autograde_arguments

    add_autograde_arguments(autograde)
    assignments.set_defaults(run=run_assignments)

    lessons = commands.add_parser("lessons", help="student copies of the lessons")
    lesson_actions = lessons.add_subparsers(
        dest="action", metavar="action", parser_class=_Parser, required=True
    )
    lessons_release = lesson_actions.add_parser(
        "release", help="student copies: exercises unsolved, hidden tests removed"
    )
    lessons_release.add_argument(
        "--source", default="lessons", help="folder of the lessons (default lessons)"
    )
    lessons_release.add_argument("--out", required=True, help="folder to write the copies to")
    lessons.set_defaults(run=run_lessons)

    gaps = commands.add_parser("gaps", help="approximation and amortization gaps on toys")
    gaps.add_argument(
        "--toys", nargs="+", choices=("banana", "linear"), default=["linear", "banana"]
    )
    gaps.add_argument("--epochs", type=_int_at_least(0), default=200)
    gaps.add_argument(
        "--no-trained",
        dest="trained",
        action="store_false",
        help="skip the trained VAE on bars (log p(x) estimated with k=5000)",
    )
    gaps.add_argument("--seed", type=int, default=0)
    gaps.add_argument("--quiet", action="store_true")
    gaps.set_defaults(run=run_gaps)

    book = commands.add_parser(
        "book", help="the lessons and the API as a static website that works offline"
    )
    book.add_argument(
        "--out",
        default=os.path.join(DEFAULT_OUT, "book"),
        help=f"the book's folder (default {os.path.join(DEFAULT_OUT, 'book')})",
    )
    book.add_argument(
        "--lessons", default="lessons", help="folder of NN_*.ipynb lessons (default lessons)"
    )
    book.add_argument(
        "--cache",
        default=os.path.join(DEFAULT_OUT, "book_cache"),
        help="executed lessons, reused while a lesson and the package's code are unchanged "
        f"(default {os.path.join(DEFAULT_OUT, 'book_cache')})",
    )
    book.add_argument("--no-cache", action="store_true", help="execute every lesson afresh")
    book.add_argument(
        "--solutions",
        action="store_true",
        help="the instructor edition: lessons with their solutions and hidden tests (default: "
        "the student edition, each lesson's student copy)",
    )
    book.add_argument(
        "--timeout",
        type=_positive_float,
        default=600,
        help="seconds a lesson cell may run, rounded up to a whole second (default 600)",
    )
    book.set_defaults(run=run_book)

    def checkpoint_command(name, help, run, points):
        sub = commands.add_parser(name, help=help)
        common(sub)
        sub.add_argument("--checkpoint", type=_existing_file, required=True)
        sub.add_argument(
            "--points",
            type=_int_at_least(1),
            default=points,
            help=f"test points to use (default {points})",
        )
        sub.set_defaults(run=run)
        return sub

    evaluate = checkpoint_command("evaluate", "test log p(x) and active units", run_evaluate, 500)
    evaluate.add_argument("--k", type=_int_at_least(1), default=5000)
    compare = checkpoint_command("compare", "classic vs amortized inference", run_compare, 200)
    compare.add_argument(
        "--steps", type=_int_at_least(1), default=2000, help="most classic-VI steps per point"
    )
    compare.add_argument(
        "--tol",
        type=_positive_float,
        default=0.01,
        help="a point has converged when its λ is known to ±tol (default 0.01)",
    )
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    import matplotlib

    matplotlib.use("Agg")  # the CLI writes PNG files; it never opens windows
    from ..runtime import tune_malloc

    tune_malloc()  # see runtime.py: faster steps, at the price of keeping peak memory
    from ..train import TrainingDiverged

    def fail(message, code):  # one line on stderr, never a traceback
        print(f"iwae_np {args.command}: {message}", file=sys.stderr)
        return code

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # divergence is reported once, below
            return args.run(args)
    except TooLarge as error:  # refused by the package before allocating
        return fail(f"error: not enough memory: {error}", EXIT_RESOURCES)
    except NotWritable as error:  # an output path without write permission
        return fail(f"error: file system: {error}", EXIT_FILES)
    except ValueError as error:  # bad input, named by the package
        return fail(f"error: {error}", EXIT_BAD_INPUT)
    except TrainingDiverged as error:
        return fail(str(error), EXIT_DIVERGED)
    except MemoryError as error:
        detail = str(error) or "the machine ran out of memory"
        return fail(f"error: not enough memory: {detail}", EXIT_RESOURCES)
    except OSError as error:  # a folder, an unwritable path, a read-only mount, a full disk
        where = f" {error.filename!r}" if getattr(error, "filename", None) else ""
        return fail(f"error: file system:{where}: {error.strerror or error}", EXIT_FILES)
    except KeyboardInterrupt:
        return fail("interrupted; checkpoints on disk are intact", EXIT_INTERRUPTED)
