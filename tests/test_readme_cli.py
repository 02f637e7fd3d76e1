"""The README's example runs as written, its test command is what CI runs, and the CLI behaves."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_readme_usage_example_runs_as_written():
    usage = README.split("## Usage", 1)[1]
    code = re.search(r"```python\n(.*?)```", usage, re.S).group(1)
    exec(compile(code, "README.md usage example", "exec"), {})


def test_ci_runs_the_readme_test_command():
    commands = re.findall(r"```bash\n\s*(.*?)\n\s*```", README, re.S)
    test_command = next(c for c in commands if "pytest" in c)
    assert test_command in (ROOT / ".ci" / "run").read_text()


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "iwae_np", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=300)


def test_cli_help_and_demo():
    assert _cli("--help").returncode == 0
    demo = _cli("demo", "--n", "20")
    assert demo.returncode == 0, demo.stderr
    assert "L_k" in demo.stdout and "50" in demo.stdout


def test_cli_bad_argument_is_one_line_exit_2():
    result = _cli("demo", "--n", "0")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "--n" in result.stderr
