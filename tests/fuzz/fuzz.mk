# tests/fuzz/fuzz.mk — libFuzzer harnesses under ASan + UBSan (clang).
#
#   make fuzz         build every harness and run each for FUZZ_SECONDS (60)
#   make fuzz-short   the same for 15 s each (CI)
#   make fuzz-build   build only
#
# Included from the top-level Makefile; also works alone: make -f tests/fuzz/fuzz.mk fuzz.
# Each run reads the committed seeds in tests/fuzz/corpus/<name>/ and writes what it
# discovers to $(BUILD)/fuzz/corpus/<name>/ (never into the source tree). A crash, a
# leak or a failed invariant stops the run with a non-zero status and leaves the input
# in $(BUILD)/fuzz/artifacts/; replay it with: $(BUILD)/fuzz/<name> <that file>.
# Needs the libFuzzer runtime (Debian: libclang-rt-14-dev).

BUILD        ?= build
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_DIR     := $(BUILD)/fuzz
FUZZ_SAN     := -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
FUZZ_CFLAGS  := -std=gnu11 -g -O1 -Wall -Wextra -Werror -I. -Iinclude -Iapi -D_GNU_SOURCE $(FUZZ_SAN) \
                $(shell pkg-config --cflags jansson 2>/dev/null)
FUZZ_LIBS    := $(shell pkg-config --libs jansson 2>/dev/null) -lm
FUZZ_NAMES   := fuzz_frame fuzz_base64 fuzz_request fuzz_route fuzz_body
FUZZ_BINS    := $(FUZZ_NAMES:%=$(FUZZ_DIR)/%)
# api/ and the base below it over the api unit tests' fake pool (tests/fake/) instead
# of pool/: the harnesses never start a supervisor or a worker. As in those tests,
# --wrap sends api/'s clock_now_ms() calls to the fake's fixed clock.
FUZZ_API_SRCS := $(wildcard api/*.c lib/*.c) tests/fake/fake_pool.c
FUZZ_API_DEPS := $(FUZZ_API_SRCS) tests/fake/fake_pool.h $(wildcard api/*.h include/pyjobd/*.h)
FUZZ_API_LIBS := -Wl,--wrap=clock_now_ms $(FUZZ_LIBS)
# libFuzzer options for every run: a hung input counts as a failure after 10 s.
FUZZ_RUN_OPTS ?= -timeout=10 -rss_limit_mb=2048 -print_final_stats=1

.PHONY: fuzz fuzz-short fuzz-build

fuzz-build: $(FUZZ_BINS)

$(FUZZ_DIR)/fuzz_frame: tests/fuzz/fuzz_frame.c lib/frame.c include/pyjobd/frame.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ tests/fuzz/fuzz_frame.c lib/frame.c

$(FUZZ_DIR)/fuzz_base64: tests/fuzz/fuzz_base64.c api/base64.c lib/blob.c include/pyjobd/base64.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ tests/fuzz/fuzz_base64.c api/base64.c lib/blob.c

$(FUZZ_DIR)/fuzz_request: tests/fuzz/fuzz_request.c $(FUZZ_API_DEPS)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ tests/fuzz/fuzz_request.c $(FUZZ_API_SRCS) $(FUZZ_API_LIBS)

$(FUZZ_DIR)/fuzz_body: tests/fuzz/fuzz_body.c $(FUZZ_API_DEPS)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ tests/fuzz/fuzz_body.c $(FUZZ_API_SRCS) $(FUZZ_API_LIBS)

$(FUZZ_DIR)/fuzz_route: tests/fuzz/fuzz_route.c $(FUZZ_API_DEPS)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ tests/fuzz/fuzz_route.c $(FUZZ_API_SRCS) $(FUZZ_API_LIBS)

# Runs every harness for $(1) seconds, one after the other, then prints a summary
# line per harness (executions, executions per second, corpus size).
define fuzz_run
	@mkdir -p $(FUZZ_DIR)/artifacts
	@for n in $(FUZZ_NAMES); do \
	  mkdir -p $(FUZZ_DIR)/corpus/$$n; \
	  echo "fuzz: $$n for $(1) s"; \
	  if ! $(FUZZ_DIR)/$$n $(FUZZ_RUN_OPTS) -max_total_time=$(1) \
	       -artifact_prefix=$(FUZZ_DIR)/artifacts/$$n- \
	       $(FUZZ_DIR)/corpus/$$n tests/fuzz/corpus/$$n > $(FUZZ_DIR)/$$n.log 2>&1; then \
	    tail -n 60 $(FUZZ_DIR)/$$n.log; \
	    echo "fuzz: $$n FAILED (log: $(FUZZ_DIR)/$$n.log, input in $(FUZZ_DIR)/artifacts/)"; \
	    exit 1; \
	  fi; \
	done
	@for n in $(FUZZ_NAMES); do \
	  execs=$$(sed -n 's/^stat::number_of_executed_units: *//p' $(FUZZ_DIR)/$$n.log); \
	  rate=$$(sed -n 's/^stat::average_exec_per_sec: *//p' $(FUZZ_DIR)/$$n.log); \
	  cov=$$(grep -o 'cov: [0-9]*' $(FUZZ_DIR)/$$n.log | tail -n 1); \
	  printf 'fuzz: %-13s %10s execs %8s exec/s  %s\n' $$n "$$execs" "$$rate" "$$cov"; \
	done
endef

fuzz: $(FUZZ_BINS)
	$(call fuzz_run,$(FUZZ_SECONDS))

fuzz-short: $(FUZZ_BINS)
	$(call fuzz_run,15)
