#!/usr/bin/env bash
# Install a single-node SLURM (Debian packages) for tests/slurm. Idempotent.
# Nothing is started here: tests/slurm/cluster.py starts the daemons itself.
set -euo pipefail
pkgs=(slurmctld slurmd slurm-client munge)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "slurm already installed: $(dpkg-query -W -f='${Version}' slurmctld)"
  exit 0
fi
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "installed: ${missing[*]} ($(dpkg-query -W -f='${Version}' slurmctld))"
