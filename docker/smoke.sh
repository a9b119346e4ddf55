#!/usr/bin/env bash
# make docker-smoke [--gpu]: the image end to end on a machine with a Docker engine and the compose plugin.
#   1. builds the CPU image (--gpu: the CUDA image) with docker/compose.yml,
#   2. starts it with compose on a free loopback port, the volumes in a fresh temporary folder that the
#      engine creates as root (what the entrypoint must make writable for uid 1000),
#   3. waits for /ready, embeds, indexes documents, searches (docker/smoke_check.py),
#   4. checks that the server runs as uid 1000, that the index it wrote on the host belongs to that uid,
#      that the healthcheck turns healthy and (--gpu) that torch and FAISS see the GPU,
#   5. tears everything down (also on failure, after printing the container's log).
# Without a Docker engine it prints "docker-smoke: skipped: ..." and exits 0 (CI runs it either way).
set -euo pipefail
cd "$(dirname "$0")/.."

profile_args=()
service=retriever
variant=cpu
if [ "${1:-}" = "--gpu" ]; then
    profile_args=(--profile gpu)
    service=retriever-gpu
    variant=cuda
elif [ -n "${1:-}" ]; then
    echo "usage: docker/smoke.sh [--gpu]" >&2
    exit 2
fi
PYTHON="${PYTHON:-python3}"

if ! command -v docker >/dev/null 2>&1; then
    echo "docker-smoke: skipped: no docker engine (no docker command)"
    exit 0
fi
if ! docker info >/dev/null 2>&1; then
    echo "docker-smoke: skipped: no docker engine (docker info cannot reach a daemon)"
    exit 0
fi
if ! docker compose version >/dev/null 2>&1; then
    echo "docker-smoke: FAILED: a Docker engine answers but the compose plugin is missing (docker compose version)" >&2
    exit 1
fi
if [ "$variant" = cuda ] && ! docker info --format '{{json .Runtimes}}' | grep -q nvidia; then
    echo "docker-smoke: skipped: --gpu needs the NVIDIA container toolkit (no nvidia runtime in docker info)"
    exit 0
fi

work="$(mktemp -d)"
project="tdro-smoke-$$"
port="$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
export TDRO_MODELS_DIR="$work/models" TDRO_INDEXES_DIR="$work/indexes" TDRO_SERVE_PORT="$port"
export TDRO_API_KEY=""  # the smoke run is open: the port is bound to 127.0.0.1 only
compose=(docker compose -f docker/compose.yml -p "$project" ${profile_args[@]+"${profile_args[@]}"})
image="$(if [ "$variant" = cuda ]; then echo tdro-suite:cuda; else echo tdro-suite:latest; fi)"

cleanup() {
    status=$?
    if [ "$status" -ne 0 ]; then
        echo "docker-smoke: FAILED; the container's log:" >&2
        "${compose[@]}" logs --no-color --tail 200 "$service" >&2 || true
    fi
    "${compose[@]}" down --volumes --remove-orphans >/dev/null 2>&1 || true
    # the volumes' files belong to uid 1000 now: remove them as root, from inside the image
    docker run --rm --entrypoint rm -v "$work:/smoke" "$image" -rf /smoke/models /smoke/indexes >/dev/null 2>&1 || true
    rm -rf "$work" 2>/dev/null || true
    exit "$status"
}
trap cleanup EXIT

start=$(date +%s)
echo "docker-smoke: building $image ($variant)"
"${compose[@]}" build "$service"
echo "docker-smoke: built in $(( $(date +%s) - start )) s; starting $service on 127.0.0.1:$port"
"${compose[@]}" up -d "$service"

"$PYTHON" docker/smoke_check.py "http://127.0.0.1:$port" --ready-timeout 600

container="$("${compose[@]}" ps -q "$service")"
server_uid="$("${compose[@]}" exec -T "$service" sh -c 'grep "^Uid:" /proc/1/status' | awk '{print $2}')"
if [ "$server_uid" != "${TDRO_APP_UID:-1000}" ]; then
    echo "docker-smoke: the server runs as uid $server_uid, not ${TDRO_APP_UID:-1000}" >&2
    exit 1
fi
owner="$(stat -c %u "$work/indexes/default/manifest.json")"
if [ "$owner" != "${TDRO_APP_UID:-1000}" ]; then
    echo "docker-smoke: the index on the host belongs to uid $owner, not ${TDRO_APP_UID:-1000}" >&2
    exit 1
fi
echo "docker-smoke: the server runs as uid $server_uid; the index it wrote belongs to uid $owner on the host"

if [ "$variant" = cuda ]; then
    "${compose[@]}" exec -T "$service" python -c "import faiss, torch; \
assert torch.cuda.is_available(), 'torch sees no GPU'; assert faiss.get_num_gpus() > 0, 'FAISS sees no GPU'; \
print('docker-smoke: torch', torch.__version__, 'on', torch.cuda.get_device_name(0), '| FAISS GPUs:', faiss.get_num_gpus())"
    "${compose[@]}" exec -T "$service" tdro-suite env
fi

deadline=$(( $(date +%s) + 90 ))
until [ "$(docker inspect --format '{{.State.Health.Status}}' "$container")" = healthy ]; do
    if [ "$(date +%s)" -gt "$deadline" ]; then
        echo "docker-smoke: the healthcheck did not turn healthy within 90 s" >&2
        exit 1
    fi
    sleep 3
done
echo "docker-smoke: healthcheck healthy; passed in $(( $(date +%s) - start )) s"
