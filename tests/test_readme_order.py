"""Following the README in order never dirties the repo or breaks the next command.

A copy of the checkout (the tracked files as they are in the work tree) gets the fake
catalog of tests/e2e.py as its *default* catalog and the fake scenarios as its default
scenarios, so the README's quick-start command runs exactly as written — real runner,
real workers, real stores — with fake Keras. Then the published files must be untouched,
the work tree clean but for the swap, and the README's own tests green.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import e2e
import pytest

REPO = e2e.REPO


def _quick_start_commands() -> list[list[str]]:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```\n(.*?)```", section, re.S)
    return [shlex.split(line) for block in blocks for line in block.splitlines()
            if line.startswith("nox ")]


def test_the_readme_quick_start_then_its_tests_stay_green(tmp_path: Path, fake_envs_dir: Path) -> None:
    commands = _quick_start_commands()
    first_look = [c for c in commands if c[:3] == ["nox", "-s", "matrix"] and "--" in c]
    assert first_look, commands  # the README offers a subset for a first look
    assert ["nox", "-s", "tests"] in commands

    copy = e2e.checkout_copy(tmp_path / "checkout")
    published = e2e.report_files(copy / "reports")

    for command in first_look:
        args = command[command.index("--") + 1:]
        env = e2e.runner_env(fake_envs_dir, {"PYTHONPATH": str(copy)})
        proc = subprocess.run([sys.executable, "-m", "runner", "matrix", *args], cwd=copy, env=env,
                              capture_output=True, text=True, timeout=600, check=False)
        assert proc.returncode == 0, e2e.describe(proc)
        [line] = [ln for ln in proc.stdout.splitlines() if ln.startswith("report: ")]
        assert "(NOT the published table; a subset, " in line and line.lower().count("published table") == 1, line
        assert (copy / ".matrix" / "reports" / "results.json.gz").is_file()

    assert e2e.report_files(copy / "reports") == published
    status = subprocess.run(["git", "status", "--porcelain"], cwd=copy, capture_output=True,
                            text=True, check=True).stdout
    assert status == "", status
    # The README's test command comes next; the tests that read reports/ must pass.
    # As a reader runs it: not as a worker of this pytest-xdist session (PYTEST_XDIST_*).
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                            "tests/test_readme.py"], cwd=copy, capture_output=True, text=True,
                           timeout=300, check=False, env=clean)
    assert tests.returncode == 0, tests.stdout[-3000:]
    assert subprocess.run(["git", "status", "--porcelain"], cwd=copy, capture_output=True,
                          text=True, check=True).stdout == ""


@pytest.mark.faults  # end-to-end runs: the slower tier
@pytest.mark.parametrize("args", [[], ["--tags", "quick", "--out", "reports"]])
def test_only_the_whole_catalog_or_an_explicit_out_publishes(tmp_path: Path, fake_envs_dir: Path,
                                                              args: list[str]) -> None:
    copy = tmp_path / "checkout"
    (copy / "runner").mkdir(parents=True)
    for name in ("runner",):
        shutil.copytree(REPO / name, copy / name, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__"))
    e2e.write_catalog(copy / "runner" / "stacks.toml")
    shutil.copytree(e2e.FAKE_SCENARIOS, copy / "scenarios",
                    ignore=shutil.ignore_patterns("__pycache__", "broken.py", "unbuildable.py",
                                                  "noisy.py", "custom.py"))
    env = e2e.runner_env(fake_envs_dir, {"PYTHONPATH": str(copy)})
    proc = subprocess.run([sys.executable, "-m", "runner", "matrix", *args], cwd=copy, env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, e2e.describe(proc)
    text = (copy / "reports" / "matrix.md").read_text(encoding="utf-8")
    if args:
        assert "NOT the published table" in text and "(NOT the published table; a subset, " in proc.stdout
        [line] = [ln for ln in proc.stdout.splitlines() if ln.startswith("report: ")]
        assert line.lower().count("published table") == 1, line  # said once, in a short line
    else:
        assert "Selection: the whole default catalog: 3 stacks × 2 scenarios × 5 formats" in text
        assert "(the published table;" in proc.stdout
