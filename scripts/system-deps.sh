#!/usr/bin/env bash
# Debian libraries that sqlite-vss's loadable extension links against.
# Installed only when missing and only as root (CI); otherwise say what to run.
set -euo pipefail
packages=(libblas3 liblapack3 libgomp1)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "system-deps: not Debian/Ubuntu; sqlite-vss needs ${missing[*]} (its tests will be skipped)"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "system-deps: sqlite-vss needs: sudo apt-get install ${missing[*]} (its tests will be skipped)"
  exit 0
fi
echo "system-deps: installing ${missing[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
