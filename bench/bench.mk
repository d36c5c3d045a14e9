# bench/bench.mk — `make bench`: pyjobd side by side with loky and
# concurrent.futures.ProcessPoolExecutor on this machine (see bench/README.md).
# Included from the Makefile with:   include bench/bench.mk
#
#   make bench                          full run (< 10 min), table + bench/results/latest.json
#   make bench BENCH_ARGS=--quick       small sizes, to try the harness (~15 s)
#   make bench BENCH_ARGS="--only 1,3"  some sections only (1 latency, 2 map, 3 raw HTTP,
#                                       4 crash/timeout, 5 memory, 6 shared store: 2 nodes
#                                       on PostgreSQL vs 1 on SQLite); --reps N repetitions
#
# It never fails on a number: it is a measurement, not a test.

# Keep the including Makefile's default goal (this file may be included before it).
_bench_saved_goal := $(.DEFAULT_GOAL)

BENCH_PYTHON   ?= /usr/bin/python3
BENCH_PACKAGES := python3-joblib python3-cloudpickle wrk valgrind
BENCH_ARGS     ?=
BENCH_SUDO     := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: bench bench-deps

# Debian packages for the peers (joblib vendors loky) and the HTTP load generator.
bench-deps:
	@missing=""; for p in $(BENCH_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(BENCH_SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(BENCH_SUDO) apt-get install -y -qq $$missing; \
	fi

bench: deps bench-deps
	$(MAKE) all
	$(BENCH_PYTHON) bench/run.py --bin $(or $(BUILD),build)/pyjobd $(BENCH_ARGS)

.DEFAULT_GOAL := $(_bench_saved_goal)
