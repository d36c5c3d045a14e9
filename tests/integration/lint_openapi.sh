#!/bin/sh
# Lints openapi.yaml with @redocly/cli (rules: redocly.yaml at the repository root).
# Installs @redocly/cli into build/npm when it is missing (npm must be installed).
# Usage: tests/integration/lint_openapi.sh [SPEC]   (default openapi.yaml; exit 0 = clean)
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PREFIX="$ROOT/build/npm"
REDOCLY="$PREFIX/node_modules/.bin/redocly"
REDOCLY_VERSION="${REDOCLY_VERSION:-2}"

if [ ! -x "$REDOCLY" ]; then
    if ! command -v npm >/dev/null 2>&1; then
        echo "lint_openapi.sh: npm is required to install @redocly/cli (apt-get install npm)" >&2
        exit 2
    fi
    echo "lint_openapi.sh: installing @redocly/cli@$REDOCLY_VERSION into $PREFIX" >&2
    mkdir -p "$PREFIX"
    npm install --silent --no-audit --no-fund --prefix "$PREFIX" "@redocly/cli@$REDOCLY_VERSION" >&2
fi

cd "$ROOT"
SPEC="${1:-openapi.yaml}"
# Warnings fail the lint too: the contract must be clean, not just valid.
set +e
OUT=$(REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true \
    "$REDOCLY" lint --config "$ROOT/redocly.yaml" --max-problems 200 --format stylish "$SPEC" 2>&1)
RC=$?
set -e
printf '%s\n' "$OUT" | grep -v '[║╔╚]' | sed '/^[[:space:]]*$/d'
if [ "$RC" -ne 0 ] || printf '%s\n' "$OUT" | grep -Eq '[0-9]+ (error|warning)'; then
    echo "lint_openapi.sh: $SPEC does not lint clean (redocly exit status $RC)" >&2
    exit 1
fi
