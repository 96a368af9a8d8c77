#!/usr/bin/env bash
# Debian packages that two tests use: chromium (the Dagster UI in a headless browser) and postgresql (the production
# instance config). Installed only when missing, and only where we are root with apt-get (CI, a fresh machine);
# elsewhere those two tests skip and say why. Everything else comes from PyPI into .venv.
# Fails (exit 1) when an install was attempted and did not give the packages, and, with MEMO_REQUIRE_SYSTEM_DEPS=1
# (CI), whenever they are missing at the end: then the tests would fail instead of skipping, so say it here first.
set -uo pipefail

missing_packages() {
  missing=()
  command -v chromium > /dev/null || missing+=(chromium)
  compgen -G "/usr/lib/postgresql/*/bin/initdb" > /dev/null || command -v initdb > /dev/null || missing+=(postgresql)
}

missing_packages
[[ ${#missing[@]} -eq 0 ]] && exit 0
if [[ "$(id -u)" != 0 ]] || ! command -v apt-get > /dev/null; then
  if [[ "${MEMO_REQUIRE_SYSTEM_DEPS:-}" == 1 ]]; then
    echo "system-deps: ${missing[*]} missing and cannot be installed here (needs root and apt-get), but MEMO_REQUIRE_SYSTEM_DEPS=1 requires them" >&2
    exit 1
  fi
  echo "not installing ${missing[*]} (needs root and apt-get): the tests that use them will skip"
  exit 0
fi
echo "installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# the package's own cluster is not used (tests start their own server on a free loopback port), so do not start it
if [[ ! -e /usr/sbin/policy-rc.d ]]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
wanted=("${missing[@]}")
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${wanted[@]}" > /dev/null; }; then
  echo "system-deps: could not install ${wanted[*]} (apt-get failed; its messages are above)" >&2
  exit 1
fi
missing_packages
if [[ ${#missing[@]} -gt 0 ]]; then
  echo "system-deps: apt-get installed ${wanted[*]} but ${missing[*]} still cannot be found" >&2
  exit 1
fi
exit 0
