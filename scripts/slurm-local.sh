#!/usr/bin/env bash
# A real single-node Slurm cluster on this machine (Debian's slurm-wlm), and a grid run on it as a
# job array over one output directory, checked against the same grid run serially:
#   scripts/slurm-local.sh [GRID.toml] [OUT]      (default configs/grid.toml, runs/slurm)
# As root: installs slurm-wlm and munge if missing, writes a one-node /etc/slurm/slurm.conf,
# starts munged, slurmctld and slurmd (no systemd needed), then
#   encore grid GRID --out OUT/array --slurm; sbatch --wait OUT/array/grid.sbatch;
#   encore grid GRID --out OUT/array --collect
# and compares OUT/array/results.csv with that of `encore grid GRID --out OUT/serial`.
set -euo pipefail
cd "$(dirname "$0")/.."
cfg="${1:-configs/grid.toml}"
out="$(realpath -m "${2:-runs/slurm}")"
[ "$(id -u)" = 0 ] || { echo "slurm-local.sh: run as root (it installs and starts Slurm daemons)" >&2; exit 1; }
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/encore-target}"
export CANDLE_NUM_THREADS=1
rustup target add wasm32-wasip2 >/dev/null
cargo plugins >/dev/null
cargo build -q -p encore
encore="$CARGO_TARGET_DIR/debug/encore"
export ENCORE_PLUGIN_PATH="$CARGO_TARGET_DIR/wasm32-wasip2/release"

host="$(hostname -s)"
mem_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 2048 ))
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge /etc/munge
[ -s /etc/munge/munge.key ] || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
chown -R munge:munge /etc/munge /run/munge 2>/dev/null || true
chmod 0400 /etc/munge/munge.key
cat > /etc/slurm/slurm.conf <<CONF
ClusterName=encore
SlurmctldHost=$host
AuthType=auth/munge
SlurmUser=root
SlurmdUser=root
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
NodeName=$host CPUs=$(nproc) RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
pgrep -x munged >/dev/null || runuser -u munge -- munged
pgrep -x slurmctld >/dev/null || slurmctld
pgrep -x slurmd >/dev/null || slurmd
for _ in $(seq 60); do
  sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)' && break
  scontrol update nodename="$host" state=resume >/dev/null 2>&1 || true
  sleep 1
done
sinfo

rm -rf "$out"
mkdir -p "$out"
"$encore" grid "$cfg" --out "$out/array" --slurm
start=$(date +%s)
sbatch --wait "$out/array/grid.sbatch"
echo "job array finished in $(( $(date +%s) - start )) s; task logs in $out/array/slurm/"
"$encore" grid "$cfg" --out "$out/array" --collect
"$encore" grid "$cfg" --out "$out/serial" --quiet
if cmp "$out/array/results.csv" "$out/serial/results.csv"; then
  echo "slurm-local: the job array's results.csv equals the serial run's"
else
  echo "slurm-local: the job array's results differ from the serial run's" >&2
  exit 1
fi
grep -E ' computed$' "$out/array/grid.log" | awk '{print $4, $5, $6}' | sort | uniq -c
