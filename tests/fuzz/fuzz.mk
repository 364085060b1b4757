# tests/fuzz/fuzz.mk - libFuzzer harnesses (issue 5, section 7); included by the Makefile.
#
#   make fuzz                  build every harness, run each FUZZ_SECONDS (default 60)
#   make fuzz FUZZ_SECONDS=600 FUZZ_ONLY=http
#   make fuzz-build            build only: build/fuzz/fuzz_<name>
#
# Objects are built again with clang under -fsanitize=fuzzer-no-link,address,
# undefined into build/fuzz/obj/; the harness links with -fsanitize=fuzzer.
# Seeds are tests/fuzz/corpus/<name>/ (read only); what the fuzzer finds goes
# to build/fuzz/corpus/<name>/, crash inputs to build/fuzz/crashes/<name>/.
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_ONLY    ?=
FUZZ_SAN      = -O1 -fsanitize=address,undefined -fno-sanitize-recover=all
FUZZ_NAMES   := $(patsubst tests/fuzz/fuzz_%.c,%,$(sort $(wildcard tests/fuzz/fuzz_*.c)))
FUZZ_BINS    := $(FUZZ_NAMES:%=build/fuzz/fuzz_%)
# every object but the programs' main()
FUZZ_LIB_SRC := $(COMMON_SRC) $(filter-out api/main.c,$(API_SRC)) $(API_GEN) \
                $(filter-out worker/main.c,$(WORKER_SRC))

.PHONY: fuzz fuzz-build
build/fuzz/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(BASE) -Iapi -Iworker $(FUZZ_SAN) -fsanitize=fuzzer-no-link -DCV_TESTING -c $< -o $@
build/fuzz/libfuzzcv.a: $(FUZZ_LIB_SRC:%.c=build/fuzz/obj/%.o)
	@rm -f $@
	ar rcs $@ $^
build/fuzz/fuzz_%: build/fuzz/obj/tests/fuzz/fuzz_%.o build/fuzz/libfuzzcv.a
	$(FUZZ_CC) $(FUZZ_SAN) -fsanitize=fuzzer -o $@ $^ $(LIBS)

fuzz-build: $(FUZZ_BINS)

# clang and libFuzzer first (as make test does, a new make reads the flags again)
fuzz:
	@bash scripts/deps.sh build fuzz
	$(MAKE) fuzz-build
	FUZZ_SECONDS=$(FUZZ_SECONDS) bash tests/fuzz/run.sh $(or $(FUZZ_ONLY),$(FUZZ_NAMES))
