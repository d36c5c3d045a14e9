#!/usr/bin/env bash
# Runs every cmocka test binary given, keeps going past failures, and ends with one
# summary line ("unit: N passed, M failed") so a reader (or CI) sees the total.
set -u
passed=0 failed=0 broken=()
for t in "$@"; do
  out=$("$t" 2>&1); rc=$?
  printf '%s\n' "$out"
  p=$(printf '%s\n' "$out" | sed -n 's/^\[  PASSED  \] \([0-9]*\) test(s)\./\1/p' | tail -1)
  f=$(printf '%s\n' "$out" | sed -n 's/^\[  FAILED  \] \([0-9]*\) test(s), listed below:/\1/p' | tail -1)
  passed=$((passed + ${p:-0}))
  failed=$((failed + ${f:-0}))
  if [ "$rc" -ne 0 ]; then
    broken+=("$(basename "$t")")
    [ -z "$f" ] && failed=$((failed + 1))   # crashed before cmocka could count
  fi
done
[ ${#broken[@]} -eq 0 ] || echo "failing: ${broken[*]}"
echo "unit: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
