# pyjobd — build, run and test.
#
#   make run    install what is missing, build, start on 127.0.0.1:8080
#   make test   install what is missing, build, run unit + integration tests
#
# Debian packages are installed with apt-get (through sudo when not root).

CC      ?= cc
PYTHON  := /usr/bin/python3
BUILD   ?= build
WERROR  ?= -Werror
CFLAGS  ?= -O2 -g
CWARN   := -std=gnu11 -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes $(WERROR)
CPPFLAGS += -Iinclude -D_GNU_SOURCE $(shell pkg-config --cflags libpq gnutls 2>/dev/null)
SAN     ?=

DEB_PACKAGES := libmicrohttpd-dev libgnutls28-dev libjansson-dev libcmocka-dev libpython3-dev python3-cloudpickle libsqlite3-dev libpq-dev postgresql \
                pkg-config curl openssl python3-pytest python3-jsonschema python3-yaml util-linux tzdata \
                python3-joblib python3-sklearn python3-tqdm libpython3.11-testsuite \
                python3-build python3-setuptools python3-wheel python3-pip python3-venv
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

SERVER_LIBS := $(shell pkg-config --libs libmicrohttpd gnutls jansson sqlite3 libpq 2>/dev/null) -lpthread
PY_CFLAGS   := $(shell pkg-config --cflags python3-embed 2>/dev/null)
PY_LIBS     := $(shell pkg-config --libs python3-embed 2>/dev/null)

# One archive per layer, linked top to bottom: a call from a layer into one above it
# has nothing to resolve against, and tools/check-layers names it (it also catches the
# upward calls a link would let through). Inside pool/, a folder is a layer.
LAYERS      := server api pool pool/supervisor pool/sources pool/lifecycle pool/records \
               pool/store lib
# A layer's sources: the .c files of its folder (the store's PostgreSQL backend, in
# pool/store/pg/, is part of the store's layer).
layer_srcs   = $(filter-out server/main.c,$(wildcard $(1)/*.c $(if $(filter pool/store,$(1)),$(1)/pg/*.c)))
layer_lib    = $(BUILD)/lib$(subst /,_,$(1)).a
LAYER_LIBS  := $(foreach l,$(LAYERS),$(call layer_lib,$(l)))
WORKER_SRCS := $(wildcard pool/worker/*.c)
WORKER_OBJS := $(WORKER_SRCS:%.c=$(BUILD)/wobj/%.o)
UNIT_SRCS   := $(shell find tests/unit -name 'test_*.c' | sort)
UNIT_BINS   := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)

PORT ?= 8080

.PHONY: all deps fuzz-deps run test unit integration clean format check-format asan valgrind
all: $(BUILD)/pyjobd $(BUILD)/pyjobd-worker

# Installs Debian packages, only those missing (one apt-get run at most).
define install_missing
	@missing=""; for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi
endef

deps:
	$(call install_missing,$(DEB_PACKAGES))

# The fuzzers need clang's libFuzzer runtime.
fuzz-deps:
	$(call install_missing,clang libclang-rt-14-dev)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CWARN) $(CFLAGS) $(SAN) -MMD -MP -c $< -o $@

$(BUILD)/wobj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(PY_CFLAGS) $(CWARN) $(CFLAGS) $(SAN) -MMD -MP -c $< -o $@

$(BUILD)/lib%.a:
	@rm -f $@
	ar rcs $@ $^

$(foreach l,$(LAYERS),$(eval $(call layer_lib,$(l)): $(patsubst %.c,$(BUILD)/obj/%.o,$(call layer_srcs,$(l)))))

# Fails the build when a layer calls into a layer above it (see tools/check-layers).
$(BUILD)/layers.ok: $(LAYER_LIBS) tools/check-layers
	tools/check-layers $(LAYER_LIBS)
	@touch $@

$(BUILD)/pyjobd: $(BUILD)/obj/server/main.o $(LAYER_LIBS) | $(BUILD)/layers.ok
	$(CC) $(CFLAGS) $(SAN) -o $@ $^ $(SERVER_LIBS)

# The worker is its own program: only lib/ (frames) below it, and Python.
$(BUILD)/pyjobd-worker: $(WORKER_OBJS) $(BUILD)/liblib.a
	$(CC) $(CFLAGS) $(SAN) -o $@ $^ $(PY_LIBS)

# -MMD: a test is rebuilt when a header or a .c it includes changes (pool_test_util.h,
# tests/unit/pool/fake_store.c).
$(BUILD)/tests/%: tests/unit/%.c $(LAYER_LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -I. $(CWARN) $(CFLAGS) $(SAN) -MMD -MP -o $@ $< $(LAYER_LIBS) $(SERVER_LIBS) -lcmocka

# The api's tests run over the fake pool (tests/fake/, which the fuzzers share): its
# object comes before the archives and defines every pool_* symbol api/ needs, so no
# member of libpool.a is pulled in; --wrap sends api/'s calls to clock_now_ms() to the
# fake's fixed clock, so nothing is defined twice. The object is named as a target so
# that make takes this rule (its recipe is the $(BUILD)/obj/%.o rule's).
FAKE_OBJS := $(BUILD)/obj/tests/fake/fake_pool.o
$(FAKE_OBJS): tests/fake/fake_pool.c
$(BUILD)/tests/api/%: tests/unit/api/%.c $(FAKE_OBJS) $(LAYER_LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -I. $(CWARN) $(CFLAGS) $(SAN) -MMD -MP -Wl,--wrap=clock_now_ms -o $@ $< \
	  $(FAKE_OBJS) $(LAYER_LIBS) $(SERVER_LIBS) -lcmocka

# Jobs survive restarts in ./pyjobd-data. Extra flags: make run RUN_ARGS="--workers 4".
# As root, workers run as nobody: a job must never run as root by default.
RUN_USER := $(shell [ "$$(id -u)" = 0 ] && echo --worker-user nobody)
run: deps all
	$(BUILD)/pyjobd --port $(PORT) --store sqlite:./pyjobd-data/jobs.db $(RUN_USER) $(RUN_ARGS)

unit: $(UNIT_BINS) $(BUILD)/pyjobd-worker
	@PYJOBD_WORKER=$(BUILD)/pyjobd-worker tests/unit/run.sh $(UNIT_BINS)

# Servers started by the tests may run root workers when the tests run as root (CI).
integration: all
	PYJOBD_BIN=$(BUILD)/pyjobd PYJOBD_ALLOW_ROOT_WORKERS=1 $(PYTHON) -m pytest -q tests/integration

test: deps
	$(MAKE) all
	$(MAKE) unit
	bash tests/integration/lint_openapi.sh
	$(MAKE) integration

# The unit and integration tests with AddressSanitizer and UBSan in the server, the
# worker and the tests; any report fails the run (halt_on_error, leak check at exit).
ASAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
ASAN_ENV := PYJOBD_TEST_SANITIZERS=1 ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1 \
            UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 LSAN_OPTIONS=exitcode=23
asan: deps
	$(MAKE) BUILD=build/asan SAN="$(ASAN_FLAGS)" CFLAGS="-O1 -g" all
	$(ASAN_ENV) $(MAKE) BUILD=build/asan SAN="$(ASAN_FLAGS)" CFLAGS="-O1 -g" unit integration

# The server under valgrind's memcheck for the HTTP- and API-facing integration tests:
# any memory error or definite leak makes it exit 99, which the tests' clean-shutdown
# check reports. Workers are not traced (see tests/valgrind/pyjobd.sh). valgrind has no
# pidfd_open, so this also runs the pool's fallback that polls wait4 for exited
# workers. The durability tests are left to make asan: under valgrind's slowdown the
# kill -9 test cannot catch enough jobs in flight. Not part of CI (about 2 min).
VALGRIND_TESTS := test_jobs test_failures test_bad_input test_concurrency test_curl \
                  test_contract test_security test_lifecycle test_pool_lifecycle
valgrind: all
	$(call install_missing,valgrind)
	PYJOBD_BIN=$(CURDIR)/tests/valgrind/pyjobd.sh VALGRIND_BUILD=$(CURDIR)/$(BUILD) \
	  PYJOBD_ALLOW_ROOT_WORKERS=1 $(PYTHON) -m pytest -q \
	  $(VALGRIND_TESTS:%=tests/integration/%.py)

# Optional, not part of make test (about a minute): testssl.sh against a throw-away HTTPS
# server with the built-in TLS policy (tools/tls-audit.sh); fails when it rates an offered
# protocol or cipher weak. Another policy: make tls-audit TLS_AUDIT_ARGS="--tls-priorities ...".
.PHONY: tls-audit
tls-audit: all
	$(call install_missing,testssl.sh openssl)
	PYJOBD_BIN=$(BUILD)/pyjobd TLS_AUDIT_JSON=$(BUILD)/tls-audit.json tools/tls-audit.sh $(TLS_AUDIT_ARGS)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

check-format:
	clang-format --dry-run -Werror $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD)

include bench/bench.mk
include tests/fuzz/fuzz.mk
$(FUZZ_BINS): | fuzz-deps
include docker/docker.mk

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
include client/python/client.mk
