#!/usr/bin/env bash
# Install what modpy_safe needs on Debian 12, and nothing that is already there.
#   tools/bootstrap.sh [run|test|bench]
# As root: 'apt-get update' once, then the missing Debian packages. Then a venv
# at .venv from /usr/bin/python3 (the interpreter mod_python embeds) with
# --system-site-packages, and 'pip install -e .[extras]' when setup.py changed.
# When everything is present this takes well under a second and calls no
# package manager.
set -euo pipefail
cd "$(dirname "$0")/.."
purpose="${1:-test}"

packages=(apache2 libapache2-mod-python postgresql python3-psycopg2 python3-psycopg python3-prometheus-client python3-venv)
extras="test"
case "$purpose" in
  run) extras="test" ;;
  # psycopg 3, psycopg_pool and SQLAlchemy: the reload tests hold connections
  # the ways real code does, inside httpd's system Python. python3-pip:
  # tests/test_getting_started.py installs modpy_safe as the guide says.
  test) packages+=(pgbouncer wrk chromium chromium-driver python3-psycopg python3-psycopg-pool
                   python3-sqlalchemy python3-pip) ;;
  bench) packages+=(wrk pgbouncer); extras="test,bench" ;;
  *) echo "usage: $0 [run|test|bench]" >&2; exit 2 ;;
esac

missing=()
for pkg in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$pkg" 2>/dev/null || true)
  [[ "$status" == ii* ]] || missing+=("$pkg")
done

if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "modpy_safe needs these Debian packages: ${missing[*]}" >&2
    echo "Install them as root: apt-get update && apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  echo ">> installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Debian starts apache2 and a postgresql cluster on install; modpy_safe runs
  # its own instances on free ports, so the packaged services are kept off.
  policy_created=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    policy_created=1
  fi
  status=0
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || status=$?
  if ((policy_created)); then rm -f /usr/sbin/policy-rc.d; fi
  if ((status)); then
    echo "apt-get install ${missing[*]} failed (exit $status)" >&2
    exit "$status"
  fi
fi

venv=.venv
if [[ ! -x $venv/bin/python ]]; then
  echo ">> creating $venv from /usr/bin/python3 (the interpreter mod_python embeds)"
  /usr/bin/python3 -m venv --system-site-packages "$venv"
fi
stamp="$venv/.installed-$extras"
if [[ ! -f $stamp || setup.py -nt $stamp ]]; then
  echo ">> pip install -e .[$extras]"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -e ".[$extras]"
  touch "$stamp"
fi
