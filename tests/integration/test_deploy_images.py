"""The container images' Dockerfiles: lint clean, and what a deployment relies on."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.deploy_tools import DEPLOY, ROOT, run_tool, tool

DOCKERFILES = sorted((DEPLOY / "docker").glob("Dockerfile*"))


def _final_stage(path: Path) -> list[str]:
    """The instructions after the last FROM, continuation lines joined."""
    text = re.sub(r"\\\n", " ", path.read_text())
    lines = [line.strip() for line in text.splitlines()]
    instructions = [line for line in lines if line and not line.startswith("#")]
    last = max(i for i, line in enumerate(instructions) if line.startswith("FROM "))
    return instructions[last:]


def _args(path: Path) -> dict[str, str]:
    return dict(re.findall(r"^ARG (\w+)=(\S+)$", path.read_text(), re.MULTILINE))


def test_there_are_the_cpu_and_cuda_images() -> None:
    assert {p.name for p in DOCKERFILES} >= {"Dockerfile", "Dockerfile.cuda"}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_passes_hadolint(dockerfile: Path) -> None:
    # Ignores are written inline beside their reason, so none are passed here.
    result = run_tool(tool("hadolint"), "--no-color", dockerfile)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_image_runs_openanomaly_as_a_non_root_user_with_a_health_check(
        dockerfile: Path) -> None:
    final = _final_stage(dockerfile)
    assert 'ENTRYPOINT ["openanomaly"]' in final, "`docker run IMAGE worker` needs it"
    users = [line.split()[1] for line in final if line.startswith("USER ")]
    assert users, "the final stage must switch to a non-root user"
    assert users[-1].split(":")[0] not in {"root", "0"}
    health = [line for line in final if line.startswith("HEALTHCHECK ")]
    assert health and "urlopen" in health[0], "a health check that asks the process"
    assert any(line.startswith("CMD ") for line in final), "a default command"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_final_stage_has_no_build_tools(dockerfile: Path) -> None:
    final = " ".join(_final_stage(dockerfile))
    for tool_name in ("gcc", "build-essential", "g++", "make ", "pip install", "npm "):
        assert tool_name not in final, f"{tool_name!r} belongs in a build stage"
    assert "COPY --from=build /opt/venv /opt/venv" in final


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_base_images_are_pinned_to_a_version(dockerfile: Path) -> None:
    args = _args(dockerfile)
    text = dockerfile.read_text()
    stages = set(re.findall(r"^FROM \S+ AS (\w+)$", text, re.MULTILINE))
    for image in re.findall(r"^FROM (\S+)", text, re.MULTILINE):
        image = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), image)
        if image in stages:
            continue
        _, _, tag = image.partition(":")
        assert tag and tag != "latest" and re.search(r"\d+\.\d+", tag), (
            f"{dockerfile.name}: {image} is not pinned to a version")


def test_pinned_versions_agree_with_the_makefile_and_constraints() -> None:
    makefile = (ROOT / "Makefile").read_text()
    torch = re.search(r"torch==([\w.]+)", makefile).group(1)
    uplot = re.search(r"uplot@([\w.]+)", makefile).group(1)
    htmx = re.search(r"htmx\.org@([\w.]+)", makefile).group(1)
    constraints = (DEPLOY / "docker" / "constraints.txt").read_text()
    assert f"\ntorch=={torch}\n" in constraints
    for dockerfile in DOCKERFILES:
        args = _args(dockerfile)
        assert args["TORCH_VERSION"] == torch, dockerfile.name
        assert args["UPLOT_VERSION"] == uplot, dockerfile.name
        assert args["HTMX_VERSION"] == htmx, dockerfile.name
        assert "--constraint /tmp/constraints.txt" in dockerfile.read_text()


def test_build_context_leaves_local_state_and_secrets_out() -> None:
    lines = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    # Everything is excluded first; only what the build copies comes back.
    assert lines[0] == "*"
    included = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert included == {"pyproject.toml", "README.md", "openanomaly",
                        "deploy/docker/constraints.txt"}
    for dockerfile in DOCKERFILES:
        for copied in re.findall(r"^COPY (?!--from)(.+)$", dockerfile.read_text(),
                                 re.MULTILINE):
            for source in copied.split()[:-1]:
                assert source.rstrip("/") in included, f"{dockerfile.name} copies {source}"
