"""The command-line checkers the deployment artifacts' tests run (hadolint, promtool,
kubectl, check-jsonschema), and what those tests read back (YAML, env files)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"


def tool(name: str) -> str:
    """The path of a checker: on PATH, or beside this interpreter (the virtualenv's bin/,
    which is not on PATH when the suite runs as `.venv/bin/python -m pytest`). Missing, the
    test is skipped, except in CI, which must run it."""
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found:
        return found
    reason = f"{name} is not installed (.ci/run installs it)"
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def run_tool(*args: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Runs a checker; the output is returned for the assertion's message."""
    return subprocess.run([str(arg) for arg in args], cwd=cwd, capture_output=True,
                          text=True, timeout=120, check=False)


def load_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def env_file(path: Path) -> dict[str, str]:
    """KEY=value lines of a Compose env file, comments and blank lines skipped."""
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


_REFERENCE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's interpolation of ${VAR} and ${VAR:-default} ($$ is a literal $)."""
    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(2) or "")
    return _REFERENCE.sub(replace, text)
