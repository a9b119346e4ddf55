"""Installing on machines other than ours: the Makefile's torch source (TORCH_INDEX), the wheel check CI
runs, and what `tdro-suite env` says about FAISS and GPUs."""

from __future__ import annotations

import os
import shutil
import subprocess
import types
from pathlib import Path

import pytest

from tdro_suite.common.environment import faiss_report

ROOT = Path(__file__).resolve().parents[1]
CPU_INDEX = "https://download.pytorch.org/whl/cpu"

pytestmark = pytest.mark.skipif(not shutil.which("make"), reason="needs make")


def make(*args: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(["make", "-s", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=120,
                          env=env if env is not None else os.environ)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.parametrize(("value", "command"), [
    ("cpu", f"pip install --index-url {CPU_INDEX} torch==2.13.0"),
    ("cu128", "pip install --index-url https://download.pytorch.org/whl/cu128 torch==2.13.0"),
    ("cu126", "pip install --index-url https://download.pytorch.org/whl/cu126 torch==2.13.0"),
    ("pip", "pip install torch==2.13.0"),
    ("https://mirror.example/simple", "pip install --index-url https://mirror.example/simple torch==2.13.0"),
])
def test_torch_index_names_the_wheel_index(value, command) -> None:
    assert make("print-torch-install", f"TORCH_INDEX={value}") == command


def test_auto_uses_the_machines_pip_source_when_it_has_one_and_the_cpu_index_otherwise(tmp_path) -> None:
    plain = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    # a plain machine: pip knows only PyPI (no configuration file, no PIP_* source variable)
    assert make("print-torch-install", env={**plain, "PIP_CONFIG_FILE": os.devnull}) == (
        f"pip install --index-url {CPU_INDEX} torch==2.13.0")
    # a machine with a local wheel folder (as ours) or a mirror: pip's own configuration decides
    for variable in ("PIP_FIND_LINKS", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL"):
        env = {**plain, "PIP_CONFIG_FILE": os.devnull, variable: str(tmp_path)}
        assert make("print-torch-install", env=env) == "pip install torch==2.13.0", variable
    config = tmp_path / "pip.conf"
    config.write_text(f"[global]\nfind-links = {tmp_path}\n")
    assert make("print-torch-install", env={**plain, "PIP_CONFIG_FILE": str(config)}) == "pip install torch==2.13.0"
    # the default is auto
    assert make("print-torch-install") == make("print-torch-install", "TORCH_INDEX=auto")


@pytest.mark.parametrize("value", ["cpu", "cu128"])
def test_make_install_puts_torch_from_that_index_before_the_project(tmp_path, value) -> None:
    lines = make("-n", "install", f"TORCH_INDEX={value}", f"VENV={tmp_path / 'venv'}").splitlines()
    pip = f"{tmp_path / 'venv'}/bin/python -m pip install"
    torch_line = f'{pip} --index-url https://download.pytorch.org/whl/{value} "torch==2.13.0"'
    assert torch_line in lines
    assert lines.index(torch_line) < lines.index(f"{pip} -e .")


def test_install_gpu_replaces_faiss_cpu_by_the_gpu_extras_faiss(tmp_path) -> None:
    venv = tmp_path / "venv"
    lines = make("-n", "install-gpu", "TORCH_INDEX=cu128", f"VENV={venv}").splitlines()
    pip = f"{venv}/bin/python -m pip"
    tail = [f'{pip} install -e ".[gpu]"', f"{pip} uninstall --yes faiss-cpu",
            f'{pip} install --no-deps --force-reinstall "faiss-gpu==1.15.1"']
    assert lines[-3:] == tail
    assert f'{pip} install --index-url https://download.pytorch.org/whl/cu128 "torch==2.13.0"' in lines


def test_ci_runs_the_wheel_check_and_the_docker_smoke_before_the_tests() -> None:
    steps = [line.split("#")[0].strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    steps = [s for s in steps if s and not s.startswith(("set ", "cd "))]
    assert steps == ["make install-dev", "bash .ci/wheel-check.sh", "bash docker/smoke.sh", "make test"]
    script = (ROOT / ".ci" / "wheel-check.sh").read_text()
    # dependencies resolve: the project itself is never installed with --no-deps
    install_lines = [line for line in script.splitlines() if '"$wheel"' in line and "install" in line]
    assert install_lines and not any("--no-deps" in line for line in install_lines)
    assert "--max-steps 2" in script and "configs/optimize/minilm-offline.yaml" in script
    assert "print-torch-install" in script  # torch as `make install` chooses it


def test_env_reports_a_cpu_only_faiss() -> None:
    import faiss

    report = faiss_report(faiss)
    if not hasattr(faiss, "StandardGpuResources"):
        assert report["faiss GPU support"].startswith("no (CPU-only build")
        assert report["faiss GPUs"] == 0
    assert report["faiss"].startswith(faiss.__version__)


def test_env_reports_the_gpus_a_gpu_faiss_sees() -> None:
    fake = types.SimpleNamespace(__version__="1.15.1", StandardGpuResources=object, get_num_gpus=lambda: 2)
    report = faiss_report(fake)
    assert report["faiss GPU support"] == "yes (GPU build)" and report["faiss GPUs"] == 2
    assert report["faiss"].startswith("1.15.1 (")
