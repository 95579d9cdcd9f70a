#!/usr/bin/env bash
# Installs headless Chromium (Debian package `chromium`) for the report's browser test; idempotent:
# does nothing when /usr/bin/chromium (or $QUARANTINE_CHROMIUM) is already there.
set -euo pipefail
if [ -x "${QUARANTINE_CHROMIUM:-/usr/bin/chromium}" ]; then exit 0; fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
echo "setup-chromium: installing the Debian package chromium (browser test of report.html)" >&2
$SUDO apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium >&2
