# Conveyor build. `make` builds release binaries into bin/; `make test` builds
# everything again under ASan+UBSan in build/san/ and runs every test.
CC      ?= cc
PKGS     = hiredis libevent libevent_pthreads libcurl libcjson libpq libconfig openssl
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
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
CLI_SRC    := $(sort $(wildcard cli/*.c))
UNIT_SRC   := $(sort $(wildcard tests/unit/test_*.c))
INTEG_SRC  := $(sort $(wildcard tests/integ/test_*.c))
HARN_SRC   := tests/harness/harness.c
BENCH_SRC  := $(sort $(wildcard bench/*.c))

BINS = conveyor-api conveyor-worker conveyor-sim conveyorctl

.PHONY: all san test unit integ bench run up down clean deps servers
all: $(addprefix bin/,$(BINS))

# ---- release -------------------------------------------------------------
build/rel/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(BASE) $(REL) -c $< -o $@
build/rel/libcommon.a: $(COMMON_SRC:%.c=build/rel/%.o)
	ar rcs $@ $^
bin/conveyor-api: $(API_SRC:%.c=build/rel/%.o) build/rel/libcommon.a
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

# ---- sanitizer build (tests) --------------------------------------------
build/san/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(BASE) $(SAN) -DCV_TESTING -c $< -o $@
build/san/libcommon.a: $(COMMON_SRC:%.c=build/san/%.o)
	ar rcs $@ $^
build/san/bin/conveyor-api: $(API_SRC:%.c=build/san/%.o) build/san/libcommon.a
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
build/san/unit_tests: $(UNIT_SRC:%.c=build/san/%.o) build/san/libcommon.a
	@mkdir -p $(dir $@)
	$(CC) $(SAN) -o $@ $^ -lcriterion $(LIBS)
build/san/integ_tests: $(INTEG_SRC:%.c=build/san/%.o) $(HARN_SRC:%.c=build/san/%.o) build/san/libcommon.a
	@mkdir -p $(dir $@)
	$(CC) $(SAN) -o $@ $^ -lcriterion $(LIBS)
build/san/tests/freeport: tests/harness/freeport.c
	@mkdir -p $(dir $@)
	$(CC) $(BASE) -O1 -o $@ $<

san: $(addprefix build/san/bin/,$(BINS)) build/san/unit_tests build/san/integ_tests build/san/tests/freeport

# ---- tests ---------------------------------------------------------------
test: deps
	$(MAKE) all san
	$(MAKE) unit integ

unit: build/san/unit_tests
	build/san/unit_tests --jobs 2

integ: san
	bash tests/harness/run-integ.sh

# ---- bench ---------------------------------------------------------------
build/rel/bench/%: bench/%.c build/rel/libcommon.a
	@mkdir -p $(dir $@)
	$(CC) $(BASE) $(REL) -o $@ $^ $(LIBS)
bench: deps all $(BENCH_SRC:bench/%.c=build/rel/bench/%)
	bash bench/run.sh

# ---- the local stack -----------------------------------------------------
deps:
	@bash scripts/deps.sh

run: deps all
	bash scripts/stack.sh run

up: deps all
	bash scripts/stack.sh up

down:
	bash scripts/stack.sh down

clean:
	rm -rf build bin

include tests/fuzz/fuzz.mk

-include $(shell find build -name '*.d' 2>/dev/null)
