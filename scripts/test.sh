#!/usr/bin/env bash
# Install botkit with its test dependencies and run the test suite.
#
#   scripts/test.sh [PYTEST ARGS...]     e.g. scripts/test.sh -m "not slow and not browser"
#
# Installs what the tests need: the dev extra, Debian's chromium for the browser tests
# (when running as root and it is missing). PostgreSQL tests use
# BOTKIT_TEST_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/test; set it
# to "" to skip them).
set -uo pipefail
cd "$(dirname "$0")/.."

scripts/install.sh dev || exit 1

if ! command -v chromium >/dev/null 2>&1 && [ -x /usr/bin/apt-get ] && [ "$(id -u)" = 0 ]; then
  echo "botkit: installing chromium for the browser tests"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "botkit: could not install chromium; browser tests will fail" >&2
fi

export BOTKIT_TEST_POSTGRES_URL="${BOTKIT_TEST_POSTGRES_URL-postgresql://postgres@127.0.0.1:5432/test}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 ANONYMIZED_TELEMETRY=False

.venv/bin/python -m pytest "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "botkit: pytest collected no tests; treating that as a failure" >&2
  exit 1
fi
exit "$rc"
