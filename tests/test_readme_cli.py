"""The README's example runs as written, its test command is what CI runs, and the CLI behaves."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_readme_usage_example_runs_as_written():
    usage = README.split("## Usage", 1)[1]
    code = re.search(r"```python\n(.*?)```", usage, re.S).group(1)
    exec(compile(code, "README.md usage example", "exec"), {})


def test_readme_second_derivative_example_runs_and_newton_converges():
    """The usage example, then the Newton-step example, as written; the gradient norm falls."""
    usage = README.split("## Usage", 1)[1]
    blocks = re.findall(r"```python\n(.*?)```", usage, re.S)[:2]
    namespace = {}
    printed = []
    namespace["print"] = lambda *args, **kwargs: printed.append(" ".join(map(str, args)))
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)
    norms = [float(line.rsplit(" ", 1)[1]) for line in printed if line.startswith("Newton")]
    assert len(norms) == 3 and norms[2] < 1e-2 * norms[0]


def test_ci_runs_the_readme_test_command():
    """CI makes a venv of its own, then installs and tests exactly as the README's command."""
    commands = re.findall(r"```bash\n\s*(.*?)\n\s*```", README, re.S)
    test_command = next(c for c in commands if "pytest" in c)
    ci = (ROOT / ".ci" / "run").read_text()
    steps = [step.strip() for step in test_command.split("&&")]
    assert steps[0].startswith("python3 -m venv") and steps[1].startswith(".")
    for step in steps[2:]:  # the install and the test command, word for word
        assert step in ci


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "iwae_np", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )


@pytest.mark.slow
def test_cli_help_and_quick_demo(tmp_path):
    assert _cli("--help").returncode == 0
    demo = _cli(
        "demo", "--quick", "--quiet", "--epochs", "2", "--k-eval", "200", "--out", str(tmp_path)
    )
    assert demo.returncode == 0, demo.stderr
    assert "IWAE (k=50)" in demo.stdout and "classic VI" in demo.stdout
    for name in ("training_curves", "bound_vs_k", "samples", "classic_vs_amortized"):
        assert (tmp_path / f"{name}.png").stat().st_size > 1000


@pytest.mark.slow
def test_cli_bad_arguments_are_one_line_exit_2(tmp_path):
    cases = [
        ("train", "--k", "0"),
        ("train", "--epochs", "-1"),
        ("train", "--dataset", "cifar"),
        ("train", "--lr", "nan"),
        ("demo", "--hidden", "0"),
        ("evaluate", "--checkpoint", str(tmp_path / "missing.npz")),
        ("compare", "--checkpoint", str(tmp_path / "missing.npz")),
        ("train", "--dataset", "mnist", "--mnist-path", str(tmp_path / "nowhere")),
        ("train", "--checkpoint", str(tmp_path / "missing.npz"), "--resume"),
    ]
    for args in cases:
        result = _cli(*args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr, args
        assert len(result.stderr.strip().splitlines()) == 1, (args, result.stderr)
