#!/usr/bin/env bash
# Stands in for build/pyjobd in the integration tests (make valgrind): the same server
# under valgrind's memcheck. Any memory error, or a definite leak at exit, makes the
# server exit 99, which the tests' clean-shutdown check reports.
#
# Workers are not traced (--trace-children=no): they are separate processes that
# embed CPython, whose allocator memcheck cannot judge without a suppression file, and
# the tests crash and kill them on purpose; ASan covers their C code (make asan).
here=$(cd "$(dirname "$0")/../.." && pwd)
build=${VALGRIND_BUILD:-$here/build}
exec valgrind --quiet --trace-children=no --leak-check=full --show-leak-kinds=definite \
  --errors-for-leak-kinds=definite --error-exitcode=99 \
  --log-file="${VALGRIND_LOG_DIR:-/tmp}/pyjobd-valgrind.%p.log" \
  "$build/pyjobd" --worker "$build/pyjobd-worker" "$@"
