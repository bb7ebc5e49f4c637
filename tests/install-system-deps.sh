#!/usr/bin/env bash
# Install the system packages the test servers need (PostgreSQL + PostGIS), when missing.
set -euo pipefail
have_pg() { ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; }
have_postgis() { ls /usr/share/postgresql/*/extension/postgis.control >/dev/null 2>&1; }
if have_pg && have_postgis; then exit 0; fi
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq postgresql postgresql-postgis >/dev/null \
  || $SUDO apt-get install -y -qq postgresql "postgresql-$(ls /usr/lib/postgresql | sort -V | tail -1)-postgis-3" >/dev/null
have_pg && have_postgis
