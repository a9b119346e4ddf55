#!/usr/bin/env bash
# GPU check of tdro-suite (see eval/gpu/README.md): install the wheels carried in .whl/ (if any) into
# a private target, then run eval/gpu/check.py with the arguments given. Exit code: the driver's
# (non-zero when any check FAILED), or 2 when the carried wheels do not install.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 2
PY=${PYTHON:-python3}
SITE=${GPU_CHECK_SITE:-/tmp/site}
WHEELS=${GPU_CHECK_WHEELS:-.whl}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

if compgen -G "$WHEELS/*.whl" > /dev/null; then
  started=$(date +%s)
  # setuptools and wheel only build the deepspeed sdist; keep them off the check's import path.
  mapfile -t wheels < <(ls "$WHEELS"/*.whl | grep -v -E '/(setuptools|wheel)-[0-9]')
  if ! "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target "$SITE" "${wheels[@]}"; then
    echo "check.sh: installing the carried wheels into $SITE failed" >&2
    exit 2
  fi
  export PYTHONPATH="$SITE:$PYTHONPATH"
  export PATH="$SITE/bin:$PATH"
  echo "check.sh: installed ${#wheels[@]} carried wheels into $SITE in $(( $(date +%s) - started )) s"
fi

# DeepSpeed ships as an sdist: build it here without network, ops left to JIT (DS_BUILD_OPS=0).
if compgen -G "$WHEELS/deepspeed-*.tar.gz" > /dev/null && ! "$PY" -c "import deepspeed" > /dev/null 2>&1; then
  started=$(date +%s)
  build="${SITE}-build"
  log="${TMPDIR:-/tmp}/gpu-check-deepspeed-install.log"
  if compgen -G "$WHEELS/setuptools-*.whl" > /dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$build" \
      "$WHEELS"/setuptools-*.whl "$WHEELS"/wheel-*.whl > "$log" 2>&1
  fi
  # No --upgrade: it would replace $SITE/bin (ninja) with deepspeed's scripts, which the check does not use.
  if DS_BUILD_OPS=0 PYTHONPATH="$build:$PYTHONPATH" timeout 240 "$PY" -m pip install --no-index --no-deps \
      --no-build-isolation --no-compile --no-cache-dir --target "$SITE" "$WHEELS"/deepspeed-*.tar.gz \
      >> "$log" 2>&1; then
    export GPU_CHECK_DEEPSPEED="built from the carried sdist in $(( $(date +%s) - started )) s"
  else
    reason=$(grep -E -i 'error|exception' "$log" | tail -1 | cut -c1-200)
    export GPU_CHECK_DEEPSPEED="building the carried sdist without network failed: ${reason:-see $log}"
  fi
  echo "check.sh: deepspeed: $GPU_CHECK_DEEPSPEED"
fi

exec "$PY" eval/gpu/check.py "$@"
