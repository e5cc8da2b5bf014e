#!/usr/bin/env bash
# `make test-container`: build Tapeline's production image with buildah and run it for real
# with podman, on a Debian machine where we are root and no Docker engine runs.
#
#   1. install buildah, podman, runc and debootstrap from Debian's packages if missing
#   2. debootstrap a Debian base image with Python (mirror read from this machine's apt
#      sources), cached as a tarball under .cache/container/ so later runs skip it
#   3. buildah bud the Dockerfile with --build-arg BASE_IMAGE=<that image>
#   4. podman run it on a fresh volume, wait for its HEALTHCHECK, drive the tutorial's
#      workflow through it (tests/container/workflow.py), streams included
#   5. check it runs as non-root, that SIGTERM ends it cleanly within 10 s (with a live
#      event stream open), and that a new container on the same volume still has every
#      model and history row, byte for byte
#   extra: the same on PostgreSQL; the queue executor (API and worker containers, a worker
#      killed mid-run); deploy/compose.yaml started with podman-compose (PostgreSQL, migrate,
#      two API replicas behind the proxy, two workers) and the workflow driven through it;
#      without a PostgreSQL server the first two are skipped, except with CI=true, where
#      that fails the run
#
# Any failed step stops the script with a non-zero exit and a "FAILED" line naming it;
# containers and the volume are removed on every exit (KEEP_CONTAINERS=1 keeps them).
# With CI=true (a fresh clone each time) the layer store is removed at the end too.
#
# Knobs (environment): TAPELINE_CONTAINER_CACHE (default <repo>/.cache/container),
# TAPELINE_IMAGE (default localhost/tapeline:test), KEEP_CONTAINERS=1,
# TAPELINE_CONTAINER_REBUILD=1 (build even when the build inputs are unchanged),
# TAPELINE_CONTAINER_STORAGE_DRIVER (default vfs, which works on any file system; overlay,
# where the kernel allows it, makes a rebuild after a source change ~10x faster).
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE="$ROOT/tests/container"
CACHE=${TAPELINE_CONTAINER_CACHE:-$ROOT/.cache/container}
IMAGE=${TAPELINE_IMAGE:-localhost/tapeline:test}
SIGTERM_LIMIT=10          # seconds SIGTERM may take to stop the service
HEALTH_TIMEOUT=90         # seconds a container may take to become healthy
BASE_PACKAGES=python3,python3-venv,ca-certificates
BASE_RECIPE_VERSION=1     # bump when the base image recipe below changes
DRIVER=${TAPELINE_CONTAINER_STORAGE_DRIVER:-vfs}

T0=$(date +%s)
STEP="start"
GRAPHROOT=""
RUNROOT=""
CONTAINERS=()
VOLUME=""
BG_PIDS=()
PG_CREATED=""
PG_RESULT="not run"
COMPOSE_UP=""
COMPOSE_RESULT="not run"

say()  { printf '==> [%4ss] %s\n' "$(( $(date +%s) - T0 ))" "$*"; }
STEPS=0
SKIPPED=""
step() { STEP=$*; STEPS=$(( STEPS + 1 )); say "$*"; }
in_ci() { local ci=${CI:-}; [[ ${ci,,} =~ ^(1|true|yes)$ ]]; }
fail() { printf '\nFAILED: %s: %s\n' "$STEP" "$*" >&2; exit 1; }

on_error() {
    local rc=$? line=$1
    printf '\nFAILED: %s (exit %s at %s line %s)\n' "$STEP" "$rc" "${BASH_SOURCE[1]:-run.sh}" "$line" >&2
}
cleanup() {
    local rc=$?
    trap - ERR
    set +e
    for pid in "${BG_PIDS[@]}"; do kill "$pid" 2>/dev/null; done
    if [[ ${#CONTAINERS[@]} -gt 0 || -n "$VOLUME" ]]; then
        if [[ $rc -ne 0 ]]; then
            for c in "${CONTAINERS[@]}"; do
                echo "---- last log lines of container $c" >&2
                pod logs --tail 40 "$c" >&2 2>&1
            done
        fi
        if [[ "${KEEP_CONTAINERS:-0}" == 1 ]]; then
            say "KEEP_CONTAINERS=1: leaving ${CONTAINERS[*]} and volume $VOLUME"
        else
            for c in "${CONTAINERS[@]}"; do pod rm --force --volumes --time 2 "$c" >/dev/null 2>&1; done
            [[ -n "$VOLUME" ]] && pod volume rm --force "$VOLUME" >/dev/null 2>&1
        fi
    fi
    if [[ -n "$COMPOSE_UP" && "${KEEP_CONTAINERS:-0}" != 1 ]]; then
        [[ $rc -ne 0 ]] && for c in $(pod ps --all --format '{{.Names}}' | grep "^${PROJECT}_"); do
            echo "---- last log lines of compose container $c" >&2
            pod logs --tail 30 "$c" >&2 2>&1
        done
        compose down -v > /dev/null 2>&1
        pod network rm --force "${PROJECT}_default" > /dev/null 2>&1
    fi
    if [[ -n "$PG_CREATED" && "${KEEP_CONTAINERS:-0}" != 1 ]]; then
        pg_db drop "$PG_URL" "$PG_DB" >/dev/null 2>&1
    fi
    # CI works in a fresh clone each time, so its layer store (~2 GB on vfs) is never
    # reused: drop it. The base image tarball stays with the clone.
    if in_ci && [[ "${KEEP_CONTAINERS:-0}" != 1 && -n "${GRAPHROOT:-}" \
          && -d "$GRAPHROOT" ]] && ! grep -q " $GRAPHROOT/" /proc/mounts; then
        rm -rf "$GRAPHROOT" "$RUNROOT"
        say "CI: removed the container storage $GRAPHROOT"
    fi
    if [[ $rc -eq 0 ]]; then
        say "all steps passed"
        echo "test-container: $STEPS passed, 0 failed${SKIPPED:+, $SKIPPED skipped}"
    else
        echo "test-container: FAILED (exit $rc) during: $STEP" >&2
        echo "test-container: $(( STEPS > 0 ? STEPS - 1 : 0 )) passed, 1 failed"
    fi
    exit "$rc"
}
trap 'on_error $LINENO' ERR
trap cleanup EXIT

# podman/buildah with this script's storage and engine configuration. The systemd
# health-check timer errors podman prints on machines without systemd are dropped.
pod() { podman --storage-driver "$DRIVER" "$@" 2> >(grep -v 'unable to get systemd connection' >&2 || true); }
bud() { buildah --storage-driver "$DRIVER" "$@"; }

# ---------------------------------------------------------------- 0. the machine
step "checking the machine"
[[ $(id -u) -eq 0 ]] || fail "must run as root (buildah/podman/debootstrap need it)"
[[ -f /etc/debian_version ]] || fail "needs a Debian machine (apt, debootstrap)"
mkdir -p "$CACHE/logs" "$CACHE/work"

# ---------------------------------------------------------------- 1. packages
step "1/5 buildah, podman, runc, debootstrap, podman-compose, netavark from Debian's packages"
missing=()
for tool in buildah podman runc debootstrap podman-compose; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
# The compose stack's bridge network: netavark, its DNS (service names) and iptables.
for package in netavark aardvark-dns iptables; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if [[ ${#missing[@]} -gt 0 ]]; then
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq > "$CACHE/logs/apt.log" 2>&1 || { tail -20 "$CACHE/logs/apt.log" >&2; fail "apt-get update"; }
    apt-get install -y -qq "${missing[@]}" >> "$CACHE/logs/apt.log" 2>&1 \
        || { tail -20 "$CACHE/logs/apt.log" >&2; fail "apt-get install ${missing[*]}"; }
fi
say "$(buildah --version | head -1); $(podman --version); $(runc --version | head -1)"

# Storage (vfs: works on any file system, no fuse-overlayfs) and engine settings of our
# own, so whatever else uses podman on this machine is left alone.
GRAPHROOT="$CACHE/storage-$DRIVER"
RUNROOT="/run/tapeline-containers/$(printf '%s' "$GRAPHROOT" | sha256sum | cut -c1-12)"
mkdir -p "$GRAPHROOT" "$RUNROOT"
cat > "$CACHE/storage.conf" <<EOF
[storage]
driver = "$DRIVER"
graphroot = "$GRAPHROOT"
runroot = "$RUNROOT"
EOF
cat > "$CACHE/containers.conf" <<EOF
[containers]
default_ulimits = []
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
[network]
network_backend = "netavark"
EOF
export CONTAINERS_STORAGE_CONF="$CACHE/storage.conf"
export CONTAINERS_CONF="$CACHE/containers.conf"

# ---------------------------------------------------------------- 2. base image
CODENAME=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
[[ -n "$CODENAME" ]] || fail "no VERSION_CODENAME in /etc/os-release"
BASE_KEY=$(printf '%s|%s|%s|%s' "$CODENAME" "$BASE_PACKAGES" "$BASE_RECIPE_VERSION" "$(dpkg --print-architecture)" \
    | sha256sum | cut -c1-12)
BASE_IMAGE="localhost/tapeline-base:$CODENAME-$BASE_KEY"
BASE_TAR="$CACHE/base-$CODENAME-$BASE_KEY.tar"
step "2/5 base image $BASE_IMAGE (debootstrap --variant=minbase, Python from Debian)"
if pod image exists "$BASE_IMAGE"; then
    say "cached in container storage"
else
    if [[ -s "$BASE_TAR" ]]; then
        say "cached tarball $BASE_TAR"
    else
        MIRROR=$(python3 "$HERE/apt_mirror.py" "$CODENAME") || fail "could not read the Debian mirror from apt sources"
        say "debootstrap $CODENAME from the machine's apt mirror ($BASE_PACKAGES)"
        rootfs="$CACHE/rootfs.tmp"
        rm -rf "$rootfs"
        t=$(date +%s)
        debootstrap --variant=minbase --include="$BASE_PACKAGES" "$CODENAME" "$rootfs" "$MIRROR" \
            > "$CACHE/logs/debootstrap.log" 2>&1 \
            || { tail -30 "$CACHE/logs/debootstrap.log" >&2; fail "debootstrap"; }
        # Slim it: no apt lists or caches, docs (but copyright files), man pages or locales.
        rm -rf "$rootfs"/var/cache/apt/* "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/* \
               "$rootfs"/usr/share/locale/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
               "$rootfs"/tmp/* "$rootfs"/etc/resolv.conf "$rootfs"/etc/hostname
        find "$rootfs/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
        find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
        : > "$rootfs/etc/machine-id"
        ln -sf python3 "$rootfs/usr/bin/python"      # like the official images
        chroot "$rootfs" python3 -c 'import venv, ensurepip, ssl, sqlite3' \
            || fail "python3 in the base root file system cannot make a venv"
        tar --numeric-owner --xattrs -C "$rootfs" -cf "$BASE_TAR.tmp" .
        mv "$BASE_TAR.tmp" "$BASE_TAR"
        rm -rf "$rootfs"
        say "debootstrap + tarball took $(( $(date +%s) - t ))s"
    fi
    pod import --change 'CMD=["python3"]' \
        --change 'ENV=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV=LANG=C.UTF-8' \
        "$BASE_TAR" "$BASE_IMAGE" > "$CACHE/logs/import.log" 2>&1 \
        || { cat "$CACHE/logs/import.log" >&2; fail "podman import $BASE_TAR"; }
fi
say "base image: $(pod image inspect --format '{{.Size}}' "$BASE_IMAGE" | awk '{printf "%.0f MB", $1/1e6}')"

# ---------------------------------------------------------------- 3. build
step "3/5 buildah bud the Dockerfile (BASE_IMAGE=$BASE_IMAGE)"
build_args=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
# pip inside the build uses the same package index as this machine's pip, if that is a
# network index (file:// indexes of the host are of no use in the build); read at run time.
pip_setting() {  # $1: env var, $2: pip config key
    local v=${!1:-}
    [[ -n "$v" ]] || v=$(python3 -m pip config get "$2" 2>/dev/null || true)
    local out=() u
    for u in $v; do [[ $u == http://* || $u == https://* ]] && out+=("$u"); done
    echo "${out[*]}"
}
idx=$(pip_setting PIP_INDEX_URL global.index-url)
extra=$(pip_setting PIP_EXTRA_INDEX_URL global.extra-index-url)
[[ -n "$idx" ]] && build_args+=(--build-arg "PIP_INDEX_URL=$idx") && say "pip index from this machine's pip settings"
[[ -n "$extra" ]] && build_args+=(--build-arg "PIP_EXTRA_INDEX_URL=$extra")
# The machine's CA bundle (it may hold a proxy's CA) so pip in the build can reach the index.
volumes=()
if [[ -f /etc/ssl/certs/ca-certificates.crt ]]; then
    volumes+=(--volume /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro)
fi
# Even a fully cached build takes most of a minute on vfs storage, so the image carries a
# hash of everything the build reads and is rebuilt only when that changes.
INPUTS=$(python3 "$HERE/context_hash.py" "$ROOT" "$(cat "$ROOT/Dockerfile")" \
    "$(pod image inspect --format '{{.Id}}' "$BASE_IMAGE")" "${build_args[*]}")
have=$(pod image inspect --format '{{index .Labels "tapeline.build-inputs"}}' "$IMAGE" 2>/dev/null || true)
if [[ "$have" == "$INPUTS" && "${TAPELINE_CONTAINER_REBUILD:-0}" != 1 ]]; then
    BUILD_SECONDS="skipped"
    say "$IMAGE is up to date (build inputs ${INPUTS:0:12} unchanged): no build"
else
    t=$(date +%s)
    bud bud --isolation chroot --format docker --layers --force-rm \
        "${build_args[@]}" "${volumes[@]}" --label "tapeline.build-inputs=$INPUTS" \
        --tag "$IMAGE" --file "$ROOT/Dockerfile" "$ROOT" > "$CACHE/logs/build.log" 2>&1 \
        || { tail -60 "$CACHE/logs/build.log" >&2; fail "buildah bud (full log: $CACHE/logs/build.log)"; }
    BUILD_SECONDS="$(( $(date +%s) - t ))s"
    # vfs keeps a full copy per layer: drop the untagged images this build did not use
    # (earlier builds' steps), keeping this build's steps as the next build's cache.
    keep=$(grep -oE '^--> [0-9a-f]{11,}|Using cache [0-9a-f]{64}' "$CACHE/logs/build.log" | awk '{print $NF}')
    for _pass in 1 2 3; do  # children first: a parent goes once its children are gone
        for id in $(pod images --all --no-trunc --format '{{.ID}} {{.Repository}}' \
                    | awk '$2 == "<none>" {sub(/^sha256:/, "", $1); print $1}'); do
            used=0
            for k in $keep; do [[ $id == "$k"* ]] && { used=1; break; }; done
            [[ $used == 1 ]] || pod rmi "$id" > /dev/null 2>&1 || true
        done
    done
fi
IMAGE_BYTES=$(pod image inspect --format '{{.Size}}' "$IMAGE")
IMAGE_MB=$(awk -v b="$IMAGE_BYTES" 'BEGIN{printf "%.0f", b/1e6}')
say "$IMAGE: ${IMAGE_MB} MB, build ${BUILD_SECONDS}; container storage $(du -sh "$GRAPHROOT" | cut -f1)"

# The image's own configuration.
cfg=$(pod image inspect --format '{{.Config.User}}|{{json .Config.ExposedPorts}}|{{json .Config.Volumes}}|{{json .HealthCheck}}|{{json .Config.Cmd}}' "$IMAGE")
IFS='|' read -r img_user img_ports img_volumes img_health img_cmd <<< "$cfg"
[[ -n "$img_user" && "$img_user" != root && "$img_user" != 0 && "$img_user" != 0:* ]] || fail "image USER is '$img_user', not a non-root user"
[[ "$img_ports" == *'"8000/tcp"'* ]] || fail "image does not EXPOSE 8000: $img_ports"
[[ "$img_volumes" == *'"/data"'* ]] || fail "image has no VOLUME /data: $img_volumes"
[[ "$img_health" == *healthz* ]] || fail "image has no HEALTHCHECK on /healthz (build with --format docker): $img_health"
[[ "$img_cmd" == '["'*'tapeline","serve"]' ]] || fail "image CMD is not exec-form tapeline serve: $img_cmd"
say "image config: USER $img_user, EXPOSE 8000, VOLUME /data, HEALTHCHECK, CMD $img_cmd"

# ---------------------------------------------------------------- 4. run it
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
BASE_URL="http://127.0.0.1:$PORT"
VOLUME="tapeline-ct-data-$$"
# The image binds 0.0.0.0, so it serves only with API keys: an admin key made here, as an
# operator would, and registered by the container at start-up.
ADMIN_KEY="tl_$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"
STATE="$CACHE/work/state-$$.json"
pod volume create "$VOLUME" > /dev/null

start_container() {  # $1: name, then extra podman run options; the service on $PORT, data volume
    local name=$1
    shift
    CONTAINERS+=("$name")
    pod run --detach --name "$name" --runtime runc --network host \
        --health-interval disable "$@" \
        --env TAPELINE_PORT="$PORT" --env TAPELINE_LOG_LEVEL=info \
        --env TAPELINE_BOOTSTRAP_ADMIN_KEY="$ADMIN_KEY" \
        --volume "$VOLUME:/data" "$IMAGE" > /dev/null
}

wait_healthy() {  # $1: name. Podman's own health timer needs systemd: run the check here.
    local deadline=$(( $(date +%s) + HEALTH_TIMEOUT )) state
    while :; do
        state=$(pod inspect --format '{{.State.Status}}' "$1")
        [[ "$state" == running ]] || fail "container $1 is $state before it became healthy"
        if pod healthcheck run "$1" > /dev/null 2>&1; then
            say "$1 healthy ($(pod inspect --format '{{.State.Health.Status}}' "$1"))"
            return 0
        fi
        (( $(date +%s) < deadline )) || fail "container $1 not healthy within ${HEALTH_TIMEOUT}s"
        sleep 1
    done
}

check_non_root() {  # $1: name
    local uid host_pid host_uid
    uid=$(pod exec "$1" sh -c 'awk "/^Uid:/ {print \$2}" /proc/1/status')
    [[ "$uid" =~ ^[0-9]+$ && "$uid" -ne 0 ]] || fail "PID 1 of $1 runs as uid '$uid'"
    host_pid=$(pod inspect --format '{{.State.Pid}}' "$1")
    host_uid=$(awk '/^Uid:/ {print $2}' "/proc/$host_pid/status")
    [[ "$host_uid" -ne 0 ]] || fail "the service process (host pid $host_pid) runs as root"
    pod exec "$1" sh -c 'touch /opt/venv/probe 2>/dev/null && exit 1 || exit 0' \
        || fail "the service user can write into /opt/venv"
    pod exec "$1" sh -c 'touch /data/.probe && rm /data/.probe' || fail "the service user cannot write /data"
    say "$1 runs as uid $uid (host pid $host_pid, uid $host_uid); /opt/venv read-only to it, /data writable"
}

sigterm_stop() {  # $1: name. SIGTERM must end it with exit 0 within SIGTERM_LIMIT seconds.
    local t rc elapsed_ms code
    t=$(date +%s%N)
    pod kill --signal TERM "$1" > /dev/null
    rc=0
    code=$(timeout $(( SIGTERM_LIMIT + 5 )) podman --storage-driver "$DRIVER" wait "$1" 2>/dev/null) || rc=$?
    elapsed_ms=$(( ($(date +%s%N) - t) / 1000000 ))
    [[ $rc -eq 0 ]] || fail "container $1 still running $(( SIGTERM_LIMIT + 5 ))s after SIGTERM"
    (( elapsed_ms <= SIGTERM_LIMIT * 1000 )) || fail "SIGTERM took ${elapsed_ms} ms (limit ${SIGTERM_LIMIT}s)"
    [[ "$code" == 0 ]] || fail "container $1 exited with code $code after SIGTERM (want 0)"
    pod logs "$1" 2>&1 | grep -q 'Finished server process' || fail "no clean uvicorn shutdown in $1's log"
    say "SIGTERM stopped $1 in ${elapsed_ms} ms, exit code 0, clean shutdown logged"
}

step "4/5 podman run (runc, host network, port $PORT, volume $VOLUME) and wait for the health check"
# The first container runs hardened (read-only root file system, no capabilities, no
# privilege escalation), the second one plain, as `docker run` would by default.
start_container "tapeline-ct-$$-1" --read-only --tmpfs /tmp --cap-drop ALL --security-opt no-new-privileges
wait_healthy "tapeline-ct-$$-1"
check_non_root "tapeline-ct-$$-1"

step "4/5 the tutorial's workflow through the container (tests/container/workflow.py drive)"
python3 "$HERE/workflow.py" drive --base-url "$BASE_URL" --state "$STATE" --key "$ADMIN_KEY"

step "5/5 SIGTERM with a live event stream open"
python3 "$HERE/workflow.py" hold-stream --base-url "$BASE_URL" --state "$STATE" --key "$ADMIN_KEY" \
    > "$CACHE/logs/hold-stream.log" 2>&1 &
HOLD_PID=$!
BG_PIDS+=("$HOLD_PID")
for _ in $(seq 1 100); do  # wait until the stream has delivered live epochs
    grep -q '^streaming' "$CACHE/logs/hold-stream.log" 2>/dev/null && break
    kill -0 "$HOLD_PID" 2>/dev/null || { cat "$CACHE/logs/hold-stream.log" >&2; fail "stream reader ended early"; }
    sleep 0.2
done
grep -q '^streaming' "$CACHE/logs/hold-stream.log" || { cat "$CACHE/logs/hold-stream.log" >&2; fail "no live stream after 20s"; }
sigterm_stop "tapeline-ct-$$-1"
for _ in $(seq 1 50); do kill -0 "$HOLD_PID" 2>/dev/null || break; sleep 0.2; done
if kill -0 "$HOLD_PID" 2>/dev/null; then fail "the stream reader was still connected 10s after the server stopped"; fi
wait "$HOLD_PID" || { cat "$CACHE/logs/hold-stream.log" >&2; fail "stream reader failed"; }
BG_PIDS=()
sed 's/^/    /' "$CACHE/logs/hold-stream.log"

step "5/5 a new container on the same volume has every model and history row"
start_container "tapeline-ct-$$-2"
wait_healthy "tapeline-ct-$$-2"
check_non_root "tapeline-ct-$$-2"
python3 "$HERE/workflow.py" verify --base-url "$BASE_URL" --state "$STATE" --key "$ADMIN_KEY"
sigterm_stop "tapeline-ct-$$-2"

# ---------------------------------------------------------------- extra: PostgreSQL
# The same image with TAPELINE_DATABASE_URL pointing at PostgreSQL, when one answers at
# TAPELINE_TEST_POSTGRES_URL (the test suite's default otherwise): a scratch database made
# by the image's own psycopg, the workflow, a restart, the byte-identical check. Without a
# server the step is skipped, but CI (CI=true) must run it, so there it fails.
PG_URL=${TAPELINE_TEST_POSTGRES_URL:-postgresql+psycopg://postgres@127.0.0.1:5432/test}
PG_DB="tapeline_ct_$$"
pg_db() { pod run --rm --runtime runc --network host --volume "$HERE:/ct:ro" \
            --entrypoint /opt/venv/bin/python "$IMAGE" /ct/pg_db.py "$@"; }
step "extra: the image on PostgreSQL (TAPELINE_DATABASE_URL=postgresql+psycopg://...)"
rc=0
DB_URL=$(pg_db create "$PG_URL" "$PG_DB" 2> "$CACHE/logs/pg.log") || rc=$?
if [[ $rc -eq 3 ]] && in_ci; then
    cat "$CACHE/logs/pg.log" >&2
    fail "CI=true needs PostgreSQL, and none answers at TAPELINE_TEST_POSTGRES_URL ($PG_URL)"
elif [[ $rc -eq 3 ]]; then
    PG_RESULT="skipped: no PostgreSQL answered at TAPELINE_TEST_POSTGRES_URL"
    STEPS=$(( STEPS - 1 ))
    SKIPPED=1
    say "SKIPPED: no PostgreSQL answers at TAPELINE_TEST_POSTGRES_URL ($(tail -1 "$CACHE/logs/pg.log"))"
else
    [[ $rc -eq 0 && -n "$DB_URL" ]] || { cat "$CACHE/logs/pg.log" >&2; fail "could not create database $PG_DB"; }
    PG_CREATED=1
    say "scratch database $PG_DB created"
    start_container "tapeline-ct-$$-pg1" --env TAPELINE_DATABASE_URL="$DB_URL"
    wait_healthy "tapeline-ct-$$-pg1"
    python3 "$HERE/workflow.py" drive --base-url "$BASE_URL" --state "$STATE.pg" --key "$ADMIN_KEY"
    sigterm_stop "tapeline-ct-$$-pg1"
    start_container "tapeline-ct-$$-pg2" --env TAPELINE_DATABASE_URL="$DB_URL"
    wait_healthy "tapeline-ct-$$-pg2"
    python3 "$HERE/workflow.py" verify --base-url "$BASE_URL" --state "$STATE.pg" --key "$ADMIN_KEY"
    sigterm_stop "tapeline-ct-$$-pg2"
    PG_RESULT="workflow and restart check passed"

    # The queue executor (issue 11): an API container that trains nothing, worker containers
    # of the same image (`tapeline worker`), the workflow through them, then the worker
    # training a run killed with SIGKILL and replaced, as an orchestrator would.
    step "extra: TAPELINE_EXECUTOR=queue: API and worker containers, a worker killed mid-run"
    QUEUE_ENV=(--env TAPELINE_DATABASE_URL="$DB_URL" --env TAPELINE_EXECUTOR=queue
               --env TAPELINE_WORKER_TIMEOUT=5)
    start_worker() {  # $1: name
        CONTAINERS+=("$1")
        pod run --detach --name "$1" --runtime runc --network host --health-interval disable \
            "${QUEUE_ENV[@]}" --env TAPELINE_LOG_LEVEL=info \
            "$IMAGE" /opt/venv/bin/tapeline worker --concurrency 1 > /dev/null
    }
    start_container "tapeline-ct-$$-api" "${QUEUE_ENV[@]}"
    wait_healthy "tapeline-ct-$$-api"
    start_worker "tapeline-ct-$$-w1"
    python3 "$HERE/workflow.py" drive --base-url "$BASE_URL" --state "$STATE.q" --key "$ADMIN_KEY"
    python3 "$HERE/workflow.py" start-long --base-url "$BASE_URL" --state "$STATE.q" --key "$ADMIN_KEY"
    pod kill --signal KILL "tapeline-ct-$$-w1" > /dev/null
    say "worker tapeline-ct-$$-w1 killed (SIGKILL) mid-run; starting tapeline-ct-$$-w2"
    start_worker "tapeline-ct-$$-w2"
    python3 "$HERE/workflow.py" finish-long --base-url "$BASE_URL" --state "$STATE.q" --key "$ADMIN_KEY"
    pod logs "tapeline-ct-$$-api" 2>&1 | grep -q "attempt" && fail "the API container trained a run"
    sigterm_stop "tapeline-ct-$$-api"
    PG_RESULT="$PG_RESULT; queue executor: workflow and worker takeover passed"
fi

# deploy/compose.yaml, for real: podman-compose starts the whole stack on a bridge network of
# its own (service names resolved by aardvark-dns, the proxy's port published on loopback).
# The file names Docker Hub's postgres and nginx images, which this machine cannot reach, so
# stand-ins built from the same Debian base (tests/container/standins/: Debian's PostgreSQL
# behind the official image's POSTGRES_* contract, Debian's nginx reading conf.d) are swapped
# in through the file's own image variables; Tapeline's services run the image built above.
# Debian's podman-compose (1.0.x) ignores depends_on conditions, so PostgreSQL is started and
# waited for first, as `depends_on: condition: service_healthy` does under Docker Compose.
step "extra: deploy/compose.yaml planned by podman-compose (with and without the admin key)"
COMPOSE_UP=1  # from here on, the cleanup takes the project's containers, volume and network down
# (Even a dry run creates the project's network: the one the stack below uses and removes.)
PROJECT="tapeline-ct-$$"
PG_IMAGE="" PROXY_IMAGE="" COMPOSE_PORT=""
address_of() {  # $1: a compose container; its address on the stack's network
    pod inspect --format '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$1"
}
# The stack's secrets are files (compose's `secrets:`), bind-mounted into the services that
# name them: readable by their users (the image's 10001, PostgreSQL's entrypoint as root).
SECRETS="$CACHE/work/secrets-$$"
rm -rf "$SECRETS" && mkdir -p "$SECRETS"
PG_PASSWORD=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
printf '%s' "$PG_PASSWORD" > "$SECRETS/postgres_password"
printf 'postgresql+psycopg://tapeline:%s@postgres:5432/tapeline' "$PG_PASSWORD" > "$SECRETS/database_url"
printf '%s' "$ADMIN_KEY" > "$SECRETS/bootstrap_admin_key"
python3 -c 'import secrets; print(secrets.token_urlsafe(32))' > "$SECRETS/secret_key"
chmod 0755 "$SECRETS" && chmod 0644 "$SECRETS"/*
compose() {
    (cd "$CACHE/work" && TAPELINE_IMAGE="$IMAGE" TAPELINE_POSTGRES_IMAGE="$PG_IMAGE" \
        TAPELINE_PROXY_IMAGE="$PROXY_IMAGE" TAPELINE_PUBLISHED_PORT="$COMPOSE_PORT" \
        TAPELINE_SECRETS_DIR="$SECRETS" \
        podman-compose --project-name "$PROJECT" -f "$ROOT/deploy/compose.yaml" "$@")
}
PLAN=$(cd "$CACHE/work" && TAPELINE_SECRETS_DIR="$SECRETS" podman-compose \
       --project-name "$PROJECT" -f "$ROOT/deploy/compose.yaml" --dry-run up -d 2>&1) || { echo "$PLAN" >&2; fail "podman-compose could not read deploy/compose.yaml"; }
for service in postgres migrate api-1 api-2 worker proxy; do
    grep -q -- "--network-alias $service" <<< "$PLAN" || fail "compose plans no service $service"
done
[[ $(grep -c -- "$SECRETS/bootstrap_admin_key:/run/secrets/bootstrap_admin_key:ro" <<< "$PLAN") -eq 2 ]] \
    || fail "compose does not give both API replicas (and them only) the admin key file"
grep -q -- "--env TAPELINE_BOOTSTRAP_ADMIN_KEY=\|-e TAPELINE_BOOTSTRAP_ADMIN_KEY=" <<< "$PLAN" \
    && fail "compose passes the admin key in an environment variable"
[[ $(grep -c "tapeline worker" <<< "$PLAN") -eq 2 ]] || fail "compose does not run two tapeline workers"
(( $(grep -c -- "--read-only" <<< "$PLAN") >= 6 )) || fail "compose runs fewer than 6 read-only containers"
say "compose plans postgres, migrate, 2 API replicas (with the admin key file), 2 workers and the proxy, read-only"

step "extra: deploy/compose.yaml started: PostgreSQL, migrate, 2 API replicas behind the proxy, 2 workers"
standin() {  # $1: name under tests/container/standins; prints the image, built when its inputs change
    local dir="$HERE/standins/$1" image key
    key=$(cat "$dir"/* <(pod image inspect --format '{{.Id}}' "$BASE_IMAGE") | sha256sum | cut -c1-12)
    image="localhost/tapeline-standin-$1:$key"
    if ! pod image exists "$image"; then
        bud bud --isolation chroot --format docker --build-arg "BASE_IMAGE=$BASE_IMAGE" \
            "${volumes[@]}" --tag "$image" --file "$dir/Containerfile" "$dir" \
            > "$CACHE/logs/standin-$1.log" 2>&1 \
            || { tail -30 "$CACHE/logs/standin-$1.log" >&2; fail "building the $1 stand-in"; }
    fi
    echo "$image"
}
t=$(date +%s)
PG_IMAGE=$(standin postgres)
PROXY_IMAGE=$(standin proxy)
say "stand-ins $PG_IMAGE and $PROXY_IMAGE ready in $(( $(date +%s) - t ))s"
COMPOSE_PORT=$(free_port)
COMPOSE_URL="http://127.0.0.1:$COMPOSE_PORT"
compose up -d postgres > "$CACHE/logs/compose-up.log" 2>&1 \
    || { tail -30 "$CACHE/logs/compose-up.log" >&2; fail "podman-compose up postgres"; }
deadline=$(( $(date +%s) + 60 ))
until pod exec "${PROJECT}_postgres_1" pg_isready -U tapeline -d tapeline > /dev/null 2>&1; do
    (( $(date +%s) < deadline )) || { pod logs "${PROJECT}_postgres_1" >&2; fail "compose's postgres not ready within 60s"; }
    sleep 0.5
done
compose up -d >> "$CACHE/logs/compose-up.log" 2>&1 \
    || { tail -30 "$CACHE/logs/compose-up.log" >&2; fail "podman-compose up"; }
deadline=$(( $(date +%s) + HEALTH_TIMEOUT ))
until python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + "/readyz", timeout=2)' \
        "$COMPOSE_URL" > /dev/null 2>&1; do
    (( $(date +%s) < deadline )) || { tail -30 "$CACHE/logs/compose-up.log" >&2; fail "the stack's /readyz did not answer through the proxy within ${HEALTH_TIMEOUT}s"; }
    sleep 1
done
[[ $(pod inspect --format '{{.State.Status}} {{.State.ExitCode}}' "${PROJECT}_migrate_1") == "exited 0" ]] \
    || { pod logs "${PROJECT}_migrate_1" >&2; fail "the migrate service did not exit 0"; }
for service in api-1_1 api-2_1 worker_1 worker_2 proxy_1 postgres_1; do
    [[ $(pod inspect --format '{{.State.Status}}' "${PROJECT}_$service") == running ]] \
        || { pod logs --tail 30 "${PROJECT}_$service" >&2; fail "compose service $service is not running"; }
done
for replica in api-1 api-2; do  # each replica is ready on its own address on the stack's network
    address=$(address_of "${PROJECT}_${replica}_1")
    python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=5)' \
        "http://$address:8000/readyz" || fail "API replica $replica is not ready at $address:8000"
done
say "stack up in $(( $(date +%s) - t ))s: migrate exited 0; postgres, api-1, api-2, 2 workers and the proxy running; $COMPOSE_URL/readyz answers"
python3 "$HERE/workflow.py" drive --base-url "$COMPOSE_URL" --state "$STATE.c" --key "$ADMIN_KEY"
trained=0
for w in worker_1 worker_2; do
    pod logs "${PROJECT}_$w" 2>&1 | grep -q "attempt" && trained=$(( trained + 1 ))
done
(( trained >= 1 )) || fail "no compose worker logged training a run"
for replica in api-1_1 api-2_1; do
    pod logs "${PROJECT}_$replica" 2>&1 | grep -q "attempt" && fail "API replica $replica trained a run"
done
# Each worker serves its own metrics (TAPELINE_WORKER_METRICS_PORT=9100 in the compose file).
worker_urls=()
for w in worker_1 worker_2; do
    worker_urls+=("http://$(address_of "${PROJECT}_$w"):9100/metrics")
done
python3 - "${worker_urls[@]}" <<'PY' || fail "the workers' metrics ports do not report the run"
import sys, urllib.request
runs = 0.0
for url in sys.argv[1:]:
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    assert "tapeline_worker_heartbeat_age_seconds" in text, url
    runs += sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                if line.startswith("tapeline_worker_runs_total"))
assert runs >= 1, runs
print(f"    ok  both workers' metrics ports answer; {runs:.0f} run attempt(s) trained in all")
PY
# One replica gone: the proxy sends everything to the other, and the stored data is all there.
pod stop --time 10 "${PROJECT}_api-1_1" > /dev/null
python3 "$HERE/workflow.py" verify --base-url "$COMPOSE_URL" --state "$STATE.c" --key "$ADMIN_KEY"
say "the tutorial's workflow through the proxy, trained by $trained of 2 workers; with api-1 stopped, api-2 serves every stored row"
compose down -v > "$CACHE/logs/compose-down.log" 2>&1 \
    || { tail -30 "$CACHE/logs/compose-down.log" >&2; fail "podman-compose down"; }
pod network rm --force "${PROJECT}_default" > /dev/null 2>&1 || true
rm -rf "$SECRETS"
pod volume prune --force > /dev/null 2>&1 || true  # the stack's anonymous /data volumes (this storage is ours)
COMPOSE_UP=""
COMPOSE_RESULT="started and drove the workflow ($PG_IMAGE, $PROXY_IMAGE stand in for Docker Hub's images)"

TOTAL=$(( $(date +%s) - T0 ))
cat <<EOF
==> summary
    image            $IMAGE (base $BASE_IMAGE)
    image size       ${IMAGE_MB} MB ($IMAGE_BYTES bytes)
    build time       ${BUILD_SECONDS} (buildah bud, $DRIVER storage; layer cache in $GRAPHROOT)
    PostgreSQL       $PG_RESULT
    compose stack    $COMPOSE_RESULT
    total time       ${TOTAL}s
EOF
rm -f "$STATE" "$STATE.pg" "$STATE.q" "$STATE.c"
