#!/usr/bin/env bash
# Debian packages that two tests use: chromium (the Dagster UI in a headless browser) and postgresql (the production
# instance config). Installed only when missing, and only where we are root with apt-get (CI, a fresh machine);
# elsewhere those two tests skip and say why. Everything else comes from PyPI into .venv.
set -uo pipefail
missing=()
command -v chromium > /dev/null || missing+=(chromium)
compgen -G "/usr/lib/postgresql/*/bin/initdb" > /dev/null || command -v initdb > /dev/null || missing+=(postgresql)
[[ ${#missing[@]} -eq 0 ]] && exit 0
if [[ "$(id -u)" != 0 ]] || ! command -v apt-get > /dev/null; then
  echo "not installing ${missing[*]} (needs root and apt-get): the tests that use them will skip"
  exit 0
fi
echo "installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# the package's own cluster is not used (tests start their own server on a free loopback port), so do not start it
own_policy=0
if [[ ! -e /usr/sbin/policy-rc.d ]]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && own_policy=1
fi
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" > /dev/null; }; then
  echo "could not install ${missing[*]}: the tests that use them will skip"
fi
[[ $own_policy == 1 ]] && rm -f /usr/sbin/policy-rc.d
exit 0
