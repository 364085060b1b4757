# Conveyor build. `make` builds release binaries into bin/; `make test` builds
# everything again under ASan+UBSan in build/san/ and runs every test.
CC      ?= cc
PKGS     = hiredis libevent libevent_pthreads libcurl libcjson libpq libconfig openssl rdkafka
# Read when the first compile or link needs them, not when make parses this file (see
# "dependencies" below). Each replaces itself with its value on first use: one pkg-config each.
PKG_CFLAGS = $(eval PKG_CFLAGS := $$(shell pkg-config --cflags $$(PKGS)))$(PKG_CFLAGS)
PKG_LIBS   = $(eval PKG_LIBS := $$(shell pkg-config --libs $$(PKGS)))$(PKG_LIBS)
WARN     = -Wall -Wextra -Werror -Wformat=2 -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
           -Wundef -Wwrite-strings -Wpointer-arith -Wvla
BASE     = -std=gnu11 -g -fno-omit-frame-pointer -MMD -MP -D_GNU_SOURCE -Icommon -Itests/harness $(PKG_CFLAGS) $(WARN)
REL      = -O2
SAN      = -O1 -fsanitize=address,undefined -fno-sanitize-recover=all
LIBS     = $(PKG_LIBS) -lpthread -lm

COMMON_SRC := $(sort $(wildcard common/*.c))
API_SRC    := $(sort $(wildcard api/*.c))
WORKER_SRC := $(sort $(wildcard worker/*.c))
SIM_SRC    := $(sort $(wildcard sim/*.c))
KMOCK_SRC  := $(sort $(wildcard sim/kmock/*.c))
CLI_SRC    := $(sort $(wildcard cli/*.c))
UNIT_SRC   := $(sort $(wildcard tests/unit/test_*.c))
INTEG_SRC  := $(sort $(wildcard tests/integ/test_*.c))
HARN_SRC   := tests/harness/harness.c tests/harness/hn_srv.c
BENCH_SRC  := $(sort $(wildcard bench/*.c))
CHAOS_SRC  := $(sort $(wildcard tests/chaos/*.c))

BINS = conveyor-api conveyor-worker conveyor-sim conveyorctl conveyor-kmock

# The dashboard (ui/) compiled into conveyor-api: scripts/ui_embed.sh turns its files into one
# C source whenever one of them changes (api/api_ui.c says why embedded).
UI_FILES := $(sort $(wildcard ui/*))
API_GEN  := build/gen/ui_assets.c
build/gen/ui_assets.c: $(UI_FILES) scripts/ui_embed.sh
	@mkdir -p $(dir $@)
	sh scripts/ui_embed.sh $@ $(UI_FILES)
build/rel/build/gen/%.o build/san/build/gen/%.o: BASE += -Iapi

.PHONY: all san test unit integ bench bench-peers run up down clean deps deps-ok servers chaos \
        check-deploy ui-test
all: $(addprefix bin/,$(BINS))

# ---- dependencies --------------------------------------------------------
# A fresh machine has none of the -dev packages when make starts, and the README's entry
# points must work there the first time:
# - deps-ok is an order-only prerequisite of every compile, so it runs (once per make) before
#   the first one, and also with -j. When a goal is deps, run, up, test, bench or bench-peers
#   it installs what is missing (scripts/deps.sh); for any other goal (plain `make`, all,
#   san, unit...) it only checks, and names what is missing and how to get it.
# - The pkg-config flags above are read lazily, at the first compile or link, so after that
#   install. A `:=` read them at parse time, before the install, and the first compile of
#   common/db.c had no -I/usr/include/postgresql.
INSTALL_GOALS = deps run up test bench bench-peers ui-test
DEPS_MODE   = $(if $(filter $(INSTALL_GOALS),$(MAKECMDGOALS)),,--check)
DEPS_GROUPS = build $(if $(filter $(INSTALL_GOALS),$(MAKECMDGOALS)),run) \
              $(if $(filter deps bench bench-peers,$(MAKECMDGOALS)),bench) \
              $(if $(filter bench-peers,$(MAKECMDGOALS)),peers) \
              $(if $(filter test,$(MAKECMDGOALS)),ops)
deps-ok:
	@bash scripts/deps.sh $(DEPS_MODE) $(DEPS_GROUPS)
deps: deps-ok

# ---- release -------------------------------------------------------------
build/rel/%.o: %.c | deps-ok
	@mkdir -p $(dir $@)
	$(CC) $(BASE) $(REL) -c $< -o $@
build/rel/libcommon.a: $(COMMON_SRC:%.c=build/rel/%.o)
	ar rcs $@ $^
bin/conveyor-api: $(API_SRC:%.c=build/rel/%.o) $(API_GEN:%.c=build/rel/%.o) build/rel/libcommon.a
	@mkdir -p bin
	$(CC) $(REL) -o $@ $^ $(LIBS)
bin/conveyor-worker: $(WORKER_SRC:%.c=build/rel/%.o) build/rel/libcommon.a
	@mkdir -p bin
	$(CC) $(REL) -o $@ $^ $(LIBS)
bin/conveyor-sim: $(SIM_SRC:%.c=build/rel/%.o) build/rel/libcommon.a
	@mkdir -p bin
	$(CC) $(REL) -o $@ $^ $(LIBS)
bin/conveyorctl: $(CLI_SRC:%.c=build/rel/%.o) build/rel/libcommon.a
	@mkdir -p bin
	$(CC) $(REL) -o $@ $^ $(LIBS)
# librdkafka's mock Kafka cluster in a process (tests, `make up BROKER=kafka`)
bin/conveyor-kmock: $(KMOCK_SRC:%.c=build/rel/%.o) build/rel/libcommon.a
	@mkdir -p bin
	$(CC) $(REL) -o $@ $^ $(LIBS)

# ---- sanitizer build (tests) --------------------------------------------
build/san/%.o: %.c | deps-ok
	@mkdir -p $(dir $@)
	$(CC) $(BASE) $(SAN) -DCV_TESTING -c $< -o $@
build/san/libcommon.a: $(COMMON_SRC:%.c=build/san/%.o)
	ar rcs $@ $^
build/san/bin/conveyor-api: $(API_SRC:%.c=build/san/%.o) $(API_GEN:%.c=build/san/%.o) \
                            build/san/libcommon.a
	@mkdir -p $(dir $@)
	$(CC) $(SAN) -o $@ $^ $(LIBS)
build/san/bin/conveyor-worker: $(WORKER_SRC:%.c=build/san/%.o) build/san/libcommon.a
	@mkdir -p $(dir $@)
	$(CC) $(SAN) -o $@ $^ $(LIBS)
build/san/bin/conveyor-sim: $(SIM_SRC:%.c=build/san/%.o) build/san/libcommon.a
	@mkdir -p $(dir $@)
	$(CC) $(SAN) -o $@ $^ $(LIBS)
build/san/bin/conveyorctl: $(CLI_SRC:%.c=build/san/%.o) build/san/libcommon.a
	@mkdir -p $(dir $@)
	$(CC) $(SAN) -o $@ $^ $(LIBS)
build/san/bin/conveyor-kmock: $(KMOCK_SRC:%.c=build/san/%.o) build/san/libcommon.a
	@mkdir -p $(dir $@)
	$(CC) $(SAN) -o $@ $^ $(LIBS)
# conveyorctl's parsers are unit-tested (tests/unit/test_ctl.c): its objects but main()
# as an archive, so that a test links only the files it calls.
CLI_LIB_SRC := $(filter-out cli/main.c,$(CLI_SRC))
build/san/libctl.a: $(CLI_LIB_SRC:%.c=build/san/%.o)
	@rm -f $@
	ar rcs $@ $^
$(UNIT_SRC:%.c=build/san/%.o): BASE += -Icli
build/san/unit_tests: $(UNIT_SRC:%.c=build/san/%.o) build/san/libctl.a build/san/libcommon.a
	@mkdir -p $(dir $@)
	$(CC) $(SAN) -o $@ $^ -lcriterion $(LIBS)
# The integration tests also call worker code in-process (tests/integ/test_carriers.c: the
# carrier clients and handlers against the simulator): every worker object but main().
WORKER_LIB_SRC := $(filter-out worker/main.c,$(WORKER_SRC))
$(INTEG_SRC:%.c=build/san/%.o): BASE += -Iworker
build/san/integ_tests: $(INTEG_SRC:%.c=build/san/%.o) $(HARN_SRC:%.c=build/san/%.o) \
                       $(WORKER_LIB_SRC:%.c=build/san/%.o) build/san/libcommon.a
	@mkdir -p $(dir $@)
	$(CC) $(SAN) -o $@ $^ -lcriterion $(LIBS)
build/san/tests/freeport: tests/harness/freeport.c | deps-ok
	@mkdir -p $(dir $@)
	$(CC) $(BASE) -O1 -o $@ $<

san: $(addprefix build/san/bin/,$(BINS)) build/san/unit_tests build/san/integ_tests build/san/tests/freeport

# ---- tests ---------------------------------------------------------------
# The deploy/ checks (seconds), unit tests, then integration tests, then a short chaos run on
# each transport (Kafka on the mock cluster): one make each, so that -j never runs them
# together.
test: deps-ok all san
	$(MAKE) check-deploy
	$(MAKE) unit
	$(MAKE) integ
	UI_BIN=build/san/bin $(MAKE) ui-test
	CHAOS_JOBS=1500 CHAOS_SECONDS=60 CHAOS_BIN=build/san/bin $(MAKE) chaos
	CHAOS_BROKER=kafka CHAOS_JOBS=1000 CHAOS_SECONDS=45 CHAOS_BIN=build/san/bin $(MAKE) chaos

# deploy/: YAML and JSON parse, promtool check and test rules, the Kubernetes schemas,
# systemd-analyze, the metric contract (tests/deploy/check.sh; it installs the ops group of
# scripts/deps.sh itself, so it also runs alone, without a build)
check-deploy:
	bash tests/deploy/check.sh

# the dashboard end to end in headless Chromium (tests/ui/run.sh: it installs Debian's chromium
# and npm's playwright-core into build/ui itself; screenshots in build/ui/screenshots/)
ui-test: deps-ok all
	bash tests/ui/run.sh

unit: build/san/unit_tests
	build/san/unit_tests --jobs 2

integ: san
	bash tests/harness/run-integ.sh

# the crash-consistency kit (tests/chaos/run-chaos.sh; knobs CHAOS_* in its header)
build/san/tests/cv-chaos: $(CHAOS_SRC:%.c=build/san/%.o) build/san/libcommon.a
	@mkdir -p $(dir $@)
	$(CC) $(SAN) -o $@ $^ $(LIBS)
chaos: deps all build/san/tests/cv-chaos
	bash tests/chaos/run-chaos.sh

# ---- bench ---------------------------------------------------------------
build/rel/bench/%: bench/%.c build/rel/libcommon.a | deps-ok
	@mkdir -p $(dir $@)
	$(CC) $(BASE) $(REL) -o $@ $(filter %.c %.a,$^) $(LIBS)
bench: deps-ok all $(BENCH_SRC:bench/%.c=build/rel/bench/%)
	bash bench/run.sh
# the same workloads for Conveyor, BullMQ and Celery side by side (bench/peers.sh: it installs
# BullMQ into build/peers with npm; knobs PEERS_* in its header)
bench-peers: deps-ok all $(BENCH_SRC:bench/%.c=build/rel/bench/%)
	bash bench/peers.sh

# ---- the local stack -----------------------------------------------------
# BROKER=kafka: the jobs go through librdkafka's mock Kafka cluster (bin/conveyor-kmock)
# instead of Redis Streams; see scripts/stack.sh.
BROKER ?= redis
run: deps-ok all
	STACK_BROKER=$(BROKER) bash scripts/stack.sh run

up: deps-ok all
	STACK_BROKER=$(BROKER) bash scripts/stack.sh up

down:
	bash scripts/stack.sh down

clean:
	rm -rf build bin

include tests/fuzz/fuzz.mk

-include $(shell find build -name '*.d' 2>/dev/null)
