#!/usr/bin/env bash
# Install what tests/test_slurm.py needs: a local Slurm (controller, node
# daemon, clients), munge for its authentication, and the shellcheck linter
# for the scripts in slurm/. Debian/Ubuntu only. Idempotent: installs only missing packages,
# and does nothing (no apt-get update) when all are present.
#
# It never starts a daemon: tests/slurm_cluster.py starts and stops its own.
# Usage: .ci/install_slurm.sh   (as root, or with sudo available)
set -euo pipefail

packages=(slurmctld slurmd slurm-client munge shellcheck)

missing=()
for pkg in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done

if ((${#missing[@]} == 0)); then
    echo "install_slurm: all present (${packages[*]})"
    exit 0
fi

if ! command -v apt-get >/dev/null; then
    echo "install_slurm: no apt-get; install ${missing[*]} by hand" >&2
    exit 1
fi

sudo=()
if [[ $(id -u) != 0 ]]; then
    sudo=(sudo)
fi

echo "install_slurm: installing ${missing[*]}"
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}"
