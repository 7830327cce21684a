#!/usr/bin/env bash
# Make sure the browser the dashboard tests drive is installed: Debian's chromium and
# chromium-driver (tests/e2e/test_ui.py, bench/ui_bench.py). Installs them with apt when
# either is missing; exits non-zero if it cannot. The tests themselves install nothing.
set -euo pipefail

if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
  echo "browser: $(chromedriver --version | head -1)"
  exit 0
fi

echo "browser: installing chromium and chromium-driver"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
echo "browser: $(chromedriver --version | head -1)"
