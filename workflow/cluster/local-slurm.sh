#!/usr/bin/env bash
# The cluster path exercised for real: a throwaway one-node SLURM cluster on 127.0.0.1 runs a
# preset's grid through workflow/profiles/slurm (snakemake-executor-plugin-slurm), and the tables
# it writes must equal those of a local run of the same grid (timings aside).
#
#   workflow/cluster/local-slurm.sh            as root; CI calls it after `make test` (.ci/run)
#
# What it does, in order:
#   1. installs Debian's slurm-wlm and munge with apt-get when they are missing (services are not
#      started by apt: a policy-rc.d is put in place for the install if there is none);
#   2. writes munge's key, slurm.conf and gres.conf into a temporary folder (nothing in /etc; the
#      clients find it through SLURM_CONF, and an srun wrapper on PATH inside the jobs): a
#      controller and one compute node on this host, both bound to 127.0.0.1
#      (CommunicationParameters=NoCtldInAddrAny,NoInAddrAny), no accounting database, partitions
#      `cpu` (default) and `gpu` as the profile names them, and one fake GPU (gres.conf
#      File=/dev/null) so that a job asking for a GPU is accepted: without a gres entry sbatch
#      rejects --gpus. There is no CUDA behind it: only the submission path is tested;
#   3. starts munged, slurmctld and slurmd by hand (no systemd needed), in the foreground of
#      background jobs whose pids it records; an EXIT trap cancels this cluster's jobs and stops
#      the daemons by those pids, whatever happens;
#   4. submits a smoke job, and one asking for a GPU;
#   5. copies the working tree (tracked and untracked-but-not-ignored files, as git lists them)
#      twice into the temporary folder, runs `snakemake TARGET --workflow-profile
#      workflow/profiles/slurm --config preset=PRESET` in one and the same target through the
#      default (local) profile in the other, so neither touches this checkout's results/ (each
#      runs its copy's sartm: PYTHONPATH);
#   6. compares every file under a `tables/` folder of the two results/ trees byte for byte, the
#      timing table (train_time) left out, and exits non-zero when they differ.
#
# Without accounting (slurmdbd) `sacct` cannot answer, so the profile polls with `squeue`; squeue
# forgets a finished job MinJobAge seconds after it ends, and the plugin insists on
# MinJobAge >= 3 x its first status poll (else it falls back to sacct and waits forever).
#
# Environment (all optional):
#   PRESET=ci  TARGET=all_tables       what to run (params.yaml presets)
#   VENV=<repo>/.venv                  where sartm and snakemake are installed
#   SLURM_PORT=6817                    slurmctld's port; slurmd gets the next one
#   SNAKEMAKE_TIMEOUT=1500             seconds allowed for each of the two snakemake runs
#   SKIP_TABLES=train_time             regex of table file names not compared (wall-clock times)
#   KEEP=0                             1: keep the temporary folder (kept anyway on failure)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VENV=${VENV:-$REPO/.venv}
PRESET=${PRESET:-ci}
TARGET=${TARGET:-all_tables}
SLURM_PORT=${SLURM_PORT:-6817}
SNAKEMAKE_TIMEOUT=${SNAKEMAKE_TIMEOUT:-1500}
SKIP_TABLES=${SKIP_TABLES:-train_time}
KEEP=${KEEP:-0}
NCPU=$(nproc)
NODE=$(hostname -s)
# the node's memory as slurm sees it: at least 16 GB, so that the profile's requests (8 GB by
# default) fit on a smaller runner; memory is neither consumed (CR_Core) nor enforced here
MEM_MB=$(awk '/^MemTotal:/ {m = int($2 / 1024); print (m > 16384 ? m : 16384)}' /proc/meminfo)

[[ -d $VENV/bin ]] && export PATH="$VENV/bin:$PATH"
T0=$SECONDS
log() { echo "[local-slurm $(( SECONDS - T0 ))s] $*"; }
die() { log "ERROR: $*" >&2; exit 1; }

# --- 1. packages ---------------------------------------------------------------------------------
install_packages() {
    local missing=0 tool
    for tool in munged slurmctld slurmd sbatch squeue; do
        command -v "$tool" >/dev/null || missing=1
    done
    (( missing )) || { log "slurm-wlm and munge already installed"; return 0; }
    local policy=/usr/sbin/policy-rc.d own_policy=0
    if [[ ! -e $policy ]]; then # keep apt from starting the system's munge / slurm services
        printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 755 "$policy" && own_policy=1
    fi
    log "installing slurm-wlm and munge"
    local apt=(apt-get -q -o DPkg::Lock::Timeout=600)
    export DEBIAN_FRONTEND=noninteractive
    "${apt[@]}" install -y --no-install-recommends slurm-wlm munge >/dev/null \
        || { "${apt[@]}" update >/dev/null && "${apt[@]}" install -y --no-install-recommends slurm-wlm munge >/dev/null; }
    (( own_policy )) && rm -f "$policy"
    command -v slurmctld >/dev/null || die "slurm-wlm did not install"
}

# --- 2. configuration in a temporary folder ------------------------------------------------------
write_config() {
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/sartm-slurm.XXXXXX")
    mkdir -p "$WORK"/{etc,munge,state/ctld,state/d,log,trees}
    chmod 700 "$WORK/munge"
    head -c 1024 /dev/urandom > "$WORK/munge/munge.key"
    chmod 400 "$WORK/munge/munge.key"
    MUNGE_SOCKET=$WORK/munge/munge.socket
    export SLURM_CONF=$WORK/etc/slurm.conf
    local port
    for port in "$SLURM_PORT" $(( SLURM_PORT + 1 )); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            die "port $port on 127.0.0.1 is taken (another slurm?): set SLURM_PORT"
        fi
    done
    getent hosts "$NODE" >/dev/null || log "warning: $NODE does not resolve (srun may fail)"
    cat > "$SLURM_CONF" <<EOF
# One-node test cluster written by workflow/cluster/local-slurm.sh: the controller and the
# compute node are this host, every daemon bound to 127.0.0.1, no accounting database.
ClusterName=sartm-local
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$SLURM_PORT
SlurmdPort=$(( SLURM_PORT + 1 ))
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCKET
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$WORK/state/ctld
SlurmdSpoolDir=$WORK/state/d
SlurmctldPidFile=$WORK/state/slurmctld.pid
SlurmdPidFile=$WORK/state/slurmd.pid
SlurmctldLogFile=$WORK/log/slurmctld.log
SlurmdLogFile=$WORK/log/slurmd.log
MailProg=/bin/true
# no cgroups (containers, VMs without systemd)
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
# CPUs are what is scheduled (as --cores on a local run); memory requests are checked against
# RealMemory but not consumed, and the configured node wins over what slurmd detects
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
ReturnToService=2
# squeue still shows a job 600 s after it ended (the plugin needs >= 3 x its first status poll)
MinJobAge=600
KillWait=10
MpiDefault=none
GresTypes=gpu
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$NCPU RealMemory=$MEM_MB Gres=gpu:1 State=UNKNOWN
PartitionName=cpu Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$NODE MaxTime=INFINITE State=UP
EOF
    # a GPU in name only: sbatch accepts --gpus=1 and the job gets CUDA_VISIBLE_DEVICES, no CUDA
    echo "NodeName=$NODE Name=gpu File=/dev/null" > "$WORK/etc/gres.conf"
    # Inside a job the plugin starts the rule with srun, from an environment it has cleared of
    # every SLURM_* variable, SLURM_CONF included: srun would look for /etc/slurm/slurm.conf. An
    # srun first on PATH (PATH is kept) that knows the configuration stands in for that file.
    local srun
    srun=$(command -v srun) || die "srun not found"
    mkdir -p "$WORK/bin"
    printf '#!/bin/sh\nSLURM_CONF=%q exec %q "$@"\n' "$SLURM_CONF" "$srun" > "$WORK/bin/srun"
    chmod 755 "$WORK/bin/srun"
    export PATH="$WORK/bin:$PATH"
    log "configuration in $WORK/etc (node $NODE: $NCPU CPUs, $MEM_MB MB, 1 fake GPU)"
}

# --- 3. daemons, started by hand and stopped by their pids ---------------------------------------
PIDS=() # "name:pid", in start order
wait_for() { # wait_for SECONDS WHAT CMD...: retry CMD once a second
    local n=$1 what=$2 i; shift 2
    for (( i = 0; i < n; i++ )); do "$@" >/dev/null 2>&1 && return 0; sleep 1; done
    die "timed out waiting for $what"
}

start_daemons() {
    munged --foreground --force --key-file="$WORK/munge/munge.key" --socket="$MUNGE_SOCKET" \
        --pid-file="$WORK/munge/munged.pid" --log-file="$WORK/log/munged.log" \
        --seed-file="$WORK/munge/munged.seed" </dev/null >>"$WORK/log/munged.out" 2>&1 &
    PIDS+=("munged:$!")
    wait_for 20 munged bash -c "munge -S '$MUNGE_SOCKET' -n | unmunge -S '$MUNGE_SOCKET'"
    slurmctld -D </dev/null >>"$WORK/log/slurmctld.out" 2>&1 &
    PIDS+=("slurmctld:$!")
    wait_for 30 slurmctld scontrol ping
    slurmd -D </dev/null >>"$WORK/log/slurmd.out" 2>&1 &
    PIDS+=("slurmd:$!")
    wait_for 60 "an idle node" bash -c "sinfo -h -N -o %t | grep -qx idle"
    log "started ${PIDS[*]}"
    if command -v ss >/dev/null; then
        ss -ltnp | awk '/slurm/ {print "  listening:", $4, $NF}'
    fi
}

stop_daemons() {
    (( ${#PIDS[@]} )) || return 0
    local ids=() # this cluster's own jobs (SLURM_CONF is ours)
    mapfile -t ids < <(squeue -h -o %i 2>/dev/null || true)
    if (( ${#ids[@]} )); then
        log "cancelling jobs ${ids[*]}"
        scancel "${ids[@]}" 2>/dev/null || true
        sleep 2
    fi
    local i entry name pid
    for (( i = ${#PIDS[@]} - 1; i >= 0; i-- )); do # reverse order: slurmd, slurmctld, munged
        entry=${PIDS[i]} name=${entry%%:*} pid=${entry##*:}
        kill -0 "$pid" 2>/dev/null || continue
        kill "$pid"
        for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
        wait "$pid" 2>/dev/null || true
        log "stopped $name (pid $pid)"
    done
    PIDS=()
}

# shellcheck disable=SC2329 # the EXIT trap's
on_exit() {
    local rc=$?
    stop_daemons
    if [[ -n ${WORK:-} && -d $WORK ]]; then
        if (( rc == 0 )) && [[ $KEEP != 1 ]]; then
            rm -rf -- "$WORK"
        else
            log "kept $WORK (logs in $WORK/log)"
        fi
    fi
    log "exit $rc after $(( SECONDS - T0 )) s"
    exit "$rc"
}

# --- 4. smoke tests ------------------------------------------------------------------------------
smoke() {
    sinfo
    local out
    out=$(sbatch --parsable --wait -o "$WORK/log/smoke-%j.out" --wrap 'hostname') \
        || die "smoke job failed"
    # shellcheck disable=SC2016 # expanded in the job
    out=$(sbatch --parsable --wait -p gpu --gpus=1 -o "$WORK/log/smoke-gpu-%j.out" \
        --wrap 'echo "CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES"') || die "GPU smoke job failed"
    log "smoke jobs ran (a GPU job got $(cat "$WORK/log/smoke-gpu-$out.out"))"
}

# --- 5. the grid, through SLURM and locally ------------------------------------------------------
copy_tree() { # copy_tree DEST: this checkout's files as git lists them, not its results
    mkdir -p "$1"
    git -C "$REPO" ls-files -z --cached --others --exclude-standard \
        | (cd "$REPO" && while IFS= read -r -d '' f; do
            [[ -e $f || -L $f ]] && printf '%s\0' "$f"
        done) \
        | tar -C "$REPO" --null -T - -cf - | tar -C "$1" -xf -
}

run_grid() { # run_grid NAME PROFILE [ARGS...]: snakemake TARGET in trees/NAME, log in log/NAME.log
    local name=$1 profile=$2; shift 2
    local tree=$WORK/trees/$name t=$SECONDS
    copy_tree "$tree"
    log "$name: snakemake $TARGET --workflow-profile $profile --config preset=$PRESET $*"
    # the target comes first: --config and --set-resources take several values. PYTHONPATH: the
    # copy's own sartm, not the checkout's (an editable install points there), in every job too
    if ! (cd "$tree" && export PYTHONPATH="$tree${PYTHONPATH:+:$PYTHONPATH}" \
        && timeout -s INT -k 120 "$SNAKEMAKE_TIMEOUT" \
        snakemake "$TARGET" --workflow-profile "$profile" --config "preset=$PRESET" "$@" \
        >"$WORK/log/$name.log" 2>&1); then
        tail -n 60 "$WORK/log/$name.log" >&2
        die "$name run failed (log: $WORK/log/$name.log)"
    fi
    local sbatched
    sbatched=$(grep -c 'submitted with SLURM jobid' "$WORK/log/$name.log" || true)
    log "$name: $(grep -Eo '[0-9]+ of [0-9]+ steps \(100%\) done' "$WORK/log/$name.log" | tail -1)" \
        "in $(( SECONDS - t )) s$( (( sbatched )) && echo ", $sbatched of them sbatch jobs")"
}

# --- 6. the tables must agree --------------------------------------------------------------------
tables() { # tables TREE: relative paths of every file under a tables/ folder of its results/
    (cd "$1" && find results -type f -path '*/tables/*' | sort)
}

compare() {
    local a=$WORK/trees/slurm b=$WORK/trees/local f compared=0 bad=0
    if ! diff <(tables "$a") <(tables "$b") >&2; then die "the two runs wrote different table files"; fi
    [[ -n $(tables "$a") ]] || die "no tables written"
    while IFS= read -r f; do
        if [[ $(basename "$f") =~ $SKIP_TABLES ]]; then continue; fi
        compared=$(( compared + 1 ))
        if ! cmp -s "$a/$f" "$b/$f"; then
            bad=$(( bad + 1 ))
            echo "DIFFERS: $f" >&2
            diff "$a/$f" "$b/$f" | head -n 20 >&2 || true
        fi
    done < <(tables "$a")
    (( bad == 0 )) || die "$bad of $compared tables differ between the SLURM and the local run"
    log "the SLURM run's $compared tables equal the local run's (not compared: /$SKIP_TABLES/)"
}

main() {
    trap on_exit EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM HUP # so that the EXIT trap stops the daemons then too
    command -v snakemake >/dev/null || die "snakemake not found (make setup, or set VENV)"
    [[ $(id -u) == 0 ]] || die "run as root: slurmd starts the jobs (and apt-get installs slurm)"
    git -C "$REPO" rev-parse --git-dir >/dev/null 2>&1 || die "$REPO is not a git checkout"
    install_packages
    write_config
    start_daemons
    smoke
    # squeue as the status command is the profile's; the first poll after 10 s (CI's jobs are short)
    run_grid slurm workflow/profiles/slurm --slurm-init-seconds-before-status-checks 10
    stop_daemons
    run_grid local workflow/profiles/default
    compare
}

main "$@"; exit # one line: bash has read it all before main runs (edits mid-run are safe)
