#!/usr/bin/env bash
# A single-node SLURM cluster with 4 fake GPUs, for testing profiles/slurm
# (Debian 12, run as root, no systemd). Idempotent. For tests/test_slurm.py
# (BOBENCH_TEST_SLURM=1; .ci/run starts it, runs the tests, then stop_cluster.sh);
# after ../shared/research/snakemake_style.md §4.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
command -v slurmctld >/dev/null || { apt-get update -qq; apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null; }
NCPU=$(nproc); MEM=$(( $(awk '/MemTotal/{print int($2/1024)}' /proc/meminfo) / 2 ))
STATE=/var/lib/slurm-ci; mkdir -p $STATE/state $STATE/spool $STATE/log $STATE/dev
# gres File= must be character devices (major 195 = nvidia) for SLURM to set CUDA_VISIBLE_DEVICES.
for i in 0 1 2 3; do [ -e $STATE/dev/gpu$i ] || mknod $STATE/dev/gpu$i c 195 $i; done
# The jobstep plugin drops SLURM_CONF, so the config must sit at the compiled-in default path.
cat > /etc/slurm/slurm.conf <<CONF
ClusterName=ci
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/state
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MpiDefault=none
ReturnToService=2
MinJobAge=600
GresTypes=gpu
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$NCPU RealMemory=$MEM Gres=gpu:4 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
cat > /etc/slurm/gres.conf <<CONF
AutoDetect=off
NodeName=localhost Name=gpu File=$STATE/dev/gpu[0-3]
CONF
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge
[ -s /etc/munge/munge.key ] || { dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 2>/dev/null; chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key; }
pgrep -x munged >/dev/null || runuser -u munge -- /usr/sbin/munged
pgrep -x slurmctld >/dev/null || slurmctld
pgrep -x slurmd >/dev/null || slurmd -N localhost
for _ in $(seq 30); do sinfo -h -N -o %T 2>/dev/null | grep -q idle && break; sleep 1; done
sinfo -N -o "%N %T %c %m %G"
