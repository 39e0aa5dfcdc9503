#!/usr/bin/env bash
# A throwaway SLURM cluster on localhost (one node, or several slurmd's), for testing the workflow's cluster profile.
#
#   tests/slurm/cluster.sh up DIR     install Debian's slurm + munge if missing (root, apt-get), write
#                                     DIR/etc/slurm.conf and gres.conf, start a private munged,
#                                     slurmctld and slurmd, wait until the node is idle
#   . DIR/env.sh                      point the SLURM commands at it (SLURM_CONF, the srun wrapper)
#   tests/slurm/cluster.sh down DIR   cancel its jobs, stop the daemons it started (by pid), nothing else
#
# Everything lives in DIR (an absolute path; a fresh folder, made if missing): config, state,
# logs, munge key and socket, fake GPU device files. Nothing is written to /etc or /run, other
# ports than SLURM's defaults are used, and a munged or SLURM already on the machine is left alone.
# Exit status 77 means "cannot run here" (not root, no apt-get); the message says why.
#
# Sizes of the declared node (SlurmdParameters=config_overrides: nothing is enforced), overridable:
#   CLUSTER_CPUS (8), CLUSTER_MEMORY_MB (65536), CLUSTER_GPUS (2), each node's
#   CLUSTER_NODES (1): 1 is one node named localhost; N > 1 starts N slurmd's named n1..nN on
#   localhost, each on its own port (Debian's slurm-wlm is built with MULTIPLE_SLURMD), so that
#   jobs land on different "nodes" whose scratch folders differ ($SLURMD_NODENAME).
# The pitfalls met on the way are noted where their fixes are, below.

set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
PACKAGES=(slurmctld slurmd slurm-client munge)

say() { echo "cluster.sh: $*" >&2; }

need_root() {
    if [[ $(id -u) -ne 0 ]]; then
        say "needs root (to install packages and run slurmd); skipping"
        exit 77
    fi
}

install_if_missing() {
    local missing=0 tool
    for tool in slurmctld slurmd sbatch squeue munged mungekey; do
        command -v "$tool" >/dev/null || missing=1
    done
    [[ $missing -eq 0 ]] && return 0
    if ! command -v apt-get >/dev/null; then
        say "slurm and munge are not installed and there is no apt-get (not Debian/Ubuntu); skipping"
        exit 77
    fi
    say "installing ${PACKAGES[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if ! timeout 300 apt-get update -q >&2 \
        || ! timeout 600 apt-get install -y -q --no-install-recommends "${PACKAGES[@]}" >&2; then
        say "could not install ${PACKAGES[*]} with apt-get (no network?); skipping"
        exit 77
    fi
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

fill() {  # fill TEMPLATE OUT: replace the @NAME@ placeholders
    sed -e "s|@NODE_LINES@|$NODE_LINES|" -e "s|@NODES@|$NODES|g" -e "s|@DIR@|$DIR|g" -e "s|@CTLD_PORT@|$CTLD_PORT|g" -e "s|@SLURMD_PORT@|$SLURMD_PORT|g" \
        -e "s|@CPUS@|$CPUS|g" -e "s|@MEMORY_MB@|$MEMORY_MB|g" -e "s|@GPUS@|$GPUS|g" \
        -e "s|@LAST_GPU@|$((GPUS - 1))|g" "$1" >"$2"
}

start() {  # start NAME COMMAND...: run a daemon in the foreground, in the background; record its pid
    local name=$1
    shift
    "$@" >>"$DIR/log/$name.out" 2>&1 &
    echo "$! $name" >>"$DIR/run/pids"
}

alive() {  # are all the daemons started so far still running?
    local pid name
    while read -r pid name; do
        kill -0 "$pid" 2>/dev/null || { say "$name (pid $pid) has exited"; return 1; }
    done <"$DIR/run/pids"
}

show_logs() {
    local f
    for f in "$DIR"/log/*; do
        [[ -f $f ]] && { echo "== $f"; tail -n 30 "$f"; }
    done >&2
}

up() {
    need_root
    install_if_missing
    CPUS=${CLUSTER_CPUS:-8}
    MEMORY_MB=${CLUSTER_MEMORY_MB:-65536}
    GPUS=${CLUSTER_GPUS:-2}
    local count=${CLUSTER_NODES:-1} node shape
    CTLD_PORT=$(free_port)
    SLURMD_PORT=$(free_port)
    shape="CPUs=$CPUS Boards=1 SocketsPerBoard=1 CoresPerSocket=$CPUS ThreadsPerCore=1 RealMemory=$MEMORY_MB Gres=gpu:$GPUS State=UNKNOWN"
    if ((count == 1)); then
        NODE_NAMES=(localhost)
        NODES=localhost
        NODE_LINES="NodeName=localhost $shape"
    else
        NODE_NAMES=()
        NODE_LINES=""
        for ((i = 1; i <= count; i++)); do
            NODE_NAMES+=("n$i")
            NODE_LINES+="NodeName=n$i NodeHostname=localhost Port=$(free_port) $shape\\n"
        done
        NODES="n[1-$count]"
    fi

    mkdir -p "$DIR"/{etc,state,spool,run,log,dev,bin,munge}
    for node in "${NODE_NAMES[@]}"; do mkdir -p "$DIR/spool/$node"; done
    chmod 755 "$DIR"  # munged (user munge) must reach its folder inside
    : >"$DIR/run/pids"
    for ((i = 0; i < GPUS; i++)); do ln -sfn /dev/null "$DIR/dev/nvidia$i"; done
    fill "$HERE/slurm.conf.in" "$DIR/etc/slurm.conf"
    fill "$HERE/gres.conf.in" "$DIR/etc/gres.conf"  # slurmd reads gres.conf beside slurm.conf

    # The jobstep plugin drops SLURM_CONF before its inner `srun` (seen with plugin 2.8.0): this
    # wrapper, first on PATH (sbatch exports PATH to the job), puts it back.
    cat >"$DIR/bin/srun" <<EOF
#!/bin/sh
SLURM_CONF="$DIR/etc/slurm.conf" exec "$(command -v srun)" "\$@"
EOF
    chmod 755 "$DIR/bin/srun"
    # Runs as root on the node when a job starts: log the GPUs Slurm gave the job.
    cat >"$DIR/bin/prolog" <<EOF
#!/bin/sh
echo "\$SLURM_JOB_ID gpus=\${SLURM_JOB_GPUS:-} cuda_visible_devices=\${CUDA_VISIBLE_DEVICES:-}" >>"$DIR/log/gpus.log"
EOF
    chmod 755 "$DIR/bin/prolog"
    cat >"$DIR/env.sh" <<EOF
export SLURM_CONF="$DIR/etc/slurm.conf"
export PATH="$DIR/bin:\$PATH"
EOF

    # A private munged with its own key and socket, run as the munge user.
    chown munge:munge "$DIR/munge"
    chmod 755 "$DIR/munge"  # munged insists that every user can reach its socket
    mungekey --create --keyfile="$DIR/munge/munge.key" 2>/dev/null
    chown munge:munge "$DIR/munge/munge.key"
    start munged setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged --foreground \
        --socket="$DIR/munge/munge.socket" --key-file="$DIR/munge/munge.key" \
        --pid-file="$DIR/munge/munged.pid" --log-file="$DIR/munge/munged.log" --seed-file="$DIR/munge/munged.seed"
    for ((i = 0; i < 50; i++)); do [[ -S $DIR/munge/munge.socket ]] && break; sleep 0.1; done

    export SLURM_CONF="$DIR/etc/slurm.conf"
    start slurmctld /usr/sbin/slurmctld -D -i -f "$SLURM_CONF"
    for node in "${NODE_NAMES[@]}"; do
        start slurmd /usr/sbin/slurmd -D -N "$node" -f "$SLURM_CONF"  # "slurmd": what down() looks for
    done

    local state="" deadline=$((SECONDS + 30))
    while ((SECONDS < deadline)); do
        state=$(timeout 2 sinfo -h -N -o %T 2>/dev/null | sort -u || true)
        [[ $state == idle ]] && break
        alive || break
        sleep 0.5
    done
    if [[ $state != idle ]]; then
        say "the nodes did not become idle in 30 s (state: '${state:-no answer}')"
        show_logs
        down
        exit 1
    fi
    if ! timeout 30 "$DIR/bin/srun" -t 1 --gpus=1 true; then
        say "srun on the new cluster failed"
        show_logs
        down
        exit 1
    fi
    say "up: $(sinfo -h -o '%P %T %N %c cpus %m MB %G') (config $SLURM_CONF)"
}

down() {
    [[ -f $DIR/run/pids ]] || return 0
    export SLURM_CONF="$DIR/etc/slurm.conf"
    # Our jobs first (this cluster runs nothing else), so that no job step outlives slurmd.
    local jobs
    jobs=$(timeout 10 squeue -h -o %i 2>/dev/null || true)
    if [[ -n $jobs ]]; then
        # shellcheck disable=SC2086
        timeout 10 scancel $jobs || true
        for ((i = 0; i < 40; i++)); do
            [[ -z $(timeout 5 squeue -h -t running,completing -o %i 2>/dev/null || true) ]] && break
            sleep 0.5
        done
    fi
    # Then the daemons, newest first, each by the pid recorded when it was started.
    local pid name
    tac "$DIR/run/pids" | while read -r pid name; do
        kill -0 "$pid" 2>/dev/null || continue
        # setpriv execs munged, so the recorded pid is the daemon itself; check before signalling.
        grep -qa "$name" "/proc/$pid/cmdline" 2>/dev/null || continue
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
    done
    mv "$DIR/run/pids" "$DIR/run/pids.stopped"
    say "down: stopped the daemons started in $DIR"
}

[[ $# -eq 2 ]] || { echo "usage: $0 up|down DIR" >&2; exit 2; }
DIR=$2
[[ $DIR == /* ]] || { echo "DIR must be an absolute path" >&2; exit 2; }
case $1 in
    up) up ;;
    down) down ;;
    *) echo "usage: $0 up|down DIR" >&2; exit 2 ;;
esac
