#!/usr/bin/env bash
# Debian libraries that sqlite-vss's loadable extension links against, and the
# Python docs (python3.11-doc) that the search-quality test and bench index.
# Installed only when missing and only as root (CI); otherwise say what to run.
set -euo pipefail
packages=(libblas3 liblapack3 libgomp1 python3.11-doc)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "system-deps: not Debian/Ubuntu; missing ${missing[*]} (sqlite-vss and search-quality tests will be skipped)"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "system-deps: run: sudo apt-get install ${missing[*]} (sqlite-vss and search-quality tests will be skipped)"
  exit 0
fi
echo "system-deps: installing ${missing[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null || {
  # python3.11-doc only exists where Python 3.11 is packaged: the rest is required.
  echo "system-deps: retrying without python3.11-doc (search-quality tests will be skipped)"
  required=()
  for p in "${missing[@]}"; do [ "$p" = python3.11-doc ] || required+=("$p"); done
  [ ${#required[@]} -eq 0 ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${required[@]}" >/dev/null
}
