#!/usr/bin/env bash
# The package a user installs, checked as they would get it (CI runs this; `make wheel-check` too):
#   1. a clean clone of the committed HEAD (nothing uncommitted, no .venv, no build leftovers),
#   2. `python -m build`: the sdist, then the wheel built from that sdist,
#   3. every tracked file under tdro_suite/ (the bundled data included) is in the sdist and in the wheel,
#   4. a fresh venv: torch first (as `make install` chooses it, see TORCH_INDEX in the Makefile), then the
#      wheel WITH its dependencies resolved by pip, and `pip check`,
#   5. from outside the source tree: `tdro-suite --version`, `tdro-suite env`, `tdro-suite data validate`
#      and the offline demo's first stage (`tdro-suite optimize`: uniform reference, then tDRO) in 2 steps each.
# Needs the dev venv (the `build` package: `make install-dev`). About 3-4 minutes on 2 cores with a warm
# pip cache; the first run on a new machine downloads the dependencies.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
BUILD_PYTHON="${BUILD_PYTHON:-$root/.venv/bin/python}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
start=$SECONDS
step() { printf 'wheel-check [%3d s] %s\n' $((SECONDS - start)) "$*"; }
quiet() {  # run "$@" with its output in a log that is shown only when it fails
    local log="$work/step.log"
    if ! "$@" >"$log" 2>&1; then
        tail -n 60 "$log" >&2
        echo "wheel-check: FAILED: $*" >&2
        exit 1
    fi
}

step "clean clone of $(git -C "$root" rev-parse --short HEAD)"
git clone --quiet --no-local --depth 1 "file://$root" "$work/src"

step "python -m build (sdist, then the wheel from it)"
quiet bash -c "cd '$work/src' && '$BUILD_PYTHON' -m build --outdir '$work/dist'"
wheel="$(ls "$work"/dist/*.whl)"
sdist="$(ls "$work"/dist/*.tar.gz)"

step "contents: $(basename "$wheel") and $(basename "$sdist")"
"$BUILD_PYTHON" - "$work/src" "$wheel" "$sdist" <<'EOF'
import subprocess, sys, tarfile, zipfile

src, wheel, sdist = sys.argv[1:]
tracked = subprocess.run(["git", "-C", src, "ls-files", "tdro_suite"], capture_output=True, text=True,
                         check=True).stdout.split()
in_wheel = set(zipfile.ZipFile(wheel).namelist())
with tarfile.open(sdist) as tar:
    in_sdist = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
missing = {"wheel": [f for f in tracked if f not in in_wheel], "sdist": [f for f in tracked if f not in in_sdist]}
for where, files in missing.items():
    if files:
        sys.exit(f"wheel-check: {len(files)} tracked files are missing from the {where}: {files[:10]}")
bundled = [f for f in tracked if f.startswith("tdro_suite/bundled/")]
if not bundled:
    sys.exit("wheel-check: no tdro_suite/bundled/ files are tracked")
print(f"wheel-check: all {len(tracked)} tracked files of tdro_suite/ are in both, {len(bundled)} of them bundled data")
EOF

torch_install="$(make -s -C "$root" print-torch-install TORCH_SPEC="$TORCH_SPEC" VENV="$root/.venv")"
step "fresh venv: $torch_install"
"$PYTHON" -m venv "$work/venv"
pip=("$work/venv/bin/python" -m pip --disable-pip-version-check)
# --no-compile: byte-compiling every dependency costs ~2 minutes here; the commands below compile what they import
# shellcheck disable=SC2086  # the printed command is split into words on purpose
quiet "${pip[@]}" install --no-compile ${torch_install#pip install }
step "pip install $(basename "$wheel") with its dependencies"
quiet "${pip[@]}" install --no-compile "$wheel"
quiet "${pip[@]}" check

cd "$work"  # outside the source tree: everything below runs the installed package
unset PYTHONDONTWRITEBYTECODE  # the first command caches the bytecode the next ones import
export HF_HUB_OFFLINE=1 TDRO_CACHE_DIR="$work/cache" HF_HOME="$work/hf"
bin="$work/venv/bin"
"$bin/python" -c "import sys, tdro_suite; assert tdro_suite.__file__.startswith(sys.prefix), tdro_suite.__file__"

step "tdro-suite --version: $("$bin/tdro-suite" --version)"
step "tdro-suite env"
"$bin/tdro-suite" env --json > env.json
"$bin/python" -c "import json; r = json.load(open('env.json')); print({k: r[k] for k in ('tdro-suite', 'torch', 'faiss', 'default device')})"
step "tdro-suite data validate (the bundled mixture)"
"$bin/tdro-suite" data validate | tail -n 1
step "the offline demo's first stage, 2 steps each: tdro-suite optimize --config configs/optimize/minilm-offline.yaml"
printf 'per_device_batch_size: 4\nhard_negatives: 1\nquery_max_length: 16\npassage_max_length: 32\nmax_steps: 2\nwarmup_steps: 0\nseed: 42\n' \
    > reference.yaml
quiet "$bin/tdro-suite" optimize --config "$work/src/configs/optimize/minilm-offline.yaml" \
    --reference-config reference.yaml --max-steps 2 --warmup-steps 0 --hard-negatives 1 \
    --query-max-length 16 --passage-max-length 32 --output-dir run
"$bin/python" -c "import json; w = json.load(open('run/weights.json')); print('weights.json:', w if len(str(w)) < 200 else str(w)[:200] + '...')"
test -s run/reference/model/config.json
step "passed"
