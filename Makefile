# seqeig build.  `make` builds build/seqeig and the two libraries:
#   build/libseqeig.a      the engine (src/: tensors, tape, ops, kernels, RNG, threads, config)
#   build/libseqeig_app.a  what plugs into it and drives it (optim/, models/, tasks/, app/)
# `make test` runs every test, `make bench` the benchmarks.
#   ARCH=generic   scalar kernels only (no AVX2/FMA), into build-generic/
#   make asan      the test suite under AddressSanitizer + UBSan, build-asan/
#   make fuzz      libFuzzer on the config loader and the run-file reader, FUZZ_SECONDS
#                  (default 60) per target, build-fuzz/ (fuzz/README.md)

ARCH ?= x86-64-v3
CC ?= gcc
ifeq ($(CC),cc)
CC := gcc
endif
PYTHON := /usr/bin/python3

ifeq ($(ARCH),generic)
MARCH := -march=x86-64
BUILD ?= build-generic
else
MARCH := -march=$(ARCH)
BUILD ?= build
endif

# OpenMP build of OpenBLAS, linked by path so that the alternatives system
# (which may point at the pthread build) cannot change our threading model.
OPENBLAS_DIR := /usr/lib/x86_64-linux-gnu/openblas-openmp
OPENBLAS_INC := /usr/include/x86_64-linux-gnu/openblas-openmp

PKGS := hdf5 yaml-0.1
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CHECK_CFLAGS = $(shell pkg-config --cflags check 2>/dev/null)
CHECK_LIBS = $(shell pkg-config --libs check 2>/dev/null)

# -std=c17 (not gnu17) keeps -ffp-contract=off: scalar loops are never
# silently fused into FMAs, so auto-vectorised and scalar tails agree.
OPT ?= -O3
CFLAGS_BASE = -std=c17 $(OPT) $(MARCH) -fopenmp -g -Wall -Wextra -Werror -D_GNU_SOURCE \
              -I$(OPENBLAS_INC) $(PKG_CFLAGS) -MMD -MP $(EXTRA_CFLAGS)
LDLIBS_BASE = -L$(OPENBLAS_DIR) -Wl,-rpath,$(OPENBLAS_DIR) -lopenblas -llapacke $(PKG_LIBS) -lm \
              $(EXTRA_LDFLAGS)

ENGINE_SRC := $(wildcard src/*.c src/ops/*.c)
ENGINE_OBJ := $(ENGINE_SRC:%.c=$(BUILD)/obj/%.o)
APP_SRC := $(filter-out app/main.c,$(wildcard optim/*.c models/*.c tasks/*.c app/*.c))
APP_OBJ := $(APP_SRC:%.c=$(BUILD)/obj/%.o)
LIB_OBJ := $(ENGINE_OBJ) $(APP_OBJ)
TEST_SRC := $(wildcard tests/*.c)
TEST_OBJ := $(TEST_SRC:%.c=$(BUILD)/obj/%.o)
TOOL_SRC := $(wildcard tests/tools/*.c)
TOOL_BIN := $(TOOL_SRC:tests/tools/%.c=$(BUILD)/tools/%)
BENCH_SRC := $(wildcard bench/*.c)
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)

ENGINE_LIB := $(BUILD)/libseqeig.a
APP_LIB := $(BUILD)/libseqeig_app.a
LIB := $(APP_LIB) $(ENGINE_LIB)
BIN := $(BUILD)/seqeig
TEST_BIN := $(BUILD)/test_seqeig

.PHONY: all test check-layers test-c test-oracle test-generic test-report test-e2e bench asan clean deps check-deps \
        experiment fuzz fuzz-build test-fuzz check-deps-fuzz
all: $(BIN) $(LIB)

deps:
	@bash scripts/deps.sh

# Before anything is compiled: are the Debian packages of the build there?
# If not, scripts/deps.sh prints the one command that installs them and
# make stops (instead of the compiler's "hdf5.h: No such file or directory").
# Order-only prerequisite of every compile rule; dpkg-query runs once per make.
check-deps:
	@bash scripts/deps.sh --check build

$(BUILD)/obj/%.o: %.c | check-deps
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) -c $< -o $@

$(BUILD)/obj/tests/%.o: tests/%.c | check-deps
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) $(CHECK_CFLAGS) -I$(BUILD) -c $< -o $@

$(ENGINE_LIB): $(ENGINE_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(APP_LIB): $(APP_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BIN): $(BUILD)/obj/app/main.o $(LIB)
	$(CC) $(CFLAGS_BASE) $^ -o $@ $(LDLIBS_BASE)

# Every `Suite *suite_x(void)` under tests/ becomes SUITE(suite_x).
$(BUILD)/test_suites.h: $(TEST_SRC)
	@mkdir -p $(BUILD)
	@grep -ho '^Suite \*suite_[a-z0-9_]*(void)' $(TEST_SRC) | sed 's/^Suite \*\(suite_[a-z0-9_]*\)(void)/SUITE(\1)/' | sort > $@.tmp
	@cmp -s $@.tmp $@ || mv $@.tmp $@; rm -f $@.tmp

$(BUILD)/obj/tests/test_main.o: $(BUILD)/test_suites.h

$(TEST_BIN): $(TEST_OBJ) $(LIB)
	$(CC) $(CFLAGS_BASE) $^ -o $@ $(CHECK_LIBS) $(LDLIBS_BASE)

$(BUILD)/tools/%: tests/tools/%.c $(LIB) | check-deps
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) $< $(LIB) -o $@ $(LDLIBS_BASE)

$(BUILD)/bench/%: bench/%.c $(LIB) | check-deps
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) $< $(LIB) -o $@ $(LDLIBS_BASE)

# Check forks per test; the tests run with a fixed thread count unless the
# caller sets OMP_NUM_THREADS.
test: deps
	@bash scripts/check_layers.sh
	@$(MAKE) --no-print-directory test-c
	@$(MAKE) --no-print-directory test-oracle
	@$(MAKE) --no-print-directory ARCH=generic test-c
	@$(MAKE) --no-print-directory test-report
	@$(MAKE) --no-print-directory test-e2e
	@$(MAKE) --no-print-directory test-fuzz

# make experiment TASK=mqar SEEDS=5 [PRESET=small|paper] [MODELS="a b"] [JOBS=n] [DATA=dir]
TASK ?= mqar
SEEDS ?= 5
PRESET ?= small
experiment: deps
	@$(MAKE) --no-print-directory all
	@bash scripts/experiment.sh "$(TASK)" "$(SEEDS)" "$(PRESET)" "$(MODELS)" "$(JOBS)" "$(DATA)"

test-c: $(TEST_BIN) $(BIN)
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-2} $(TEST_BIN)

# Every model variant against the independent PyTorch implementation.
test-oracle: $(BUILD)/tools/oracle_dump
	@rm -rf $(BUILD)/oracle
	OMP_NUM_THREADS=2 $(BUILD)/tools/oracle_dump $(BUILD)/oracle
	$(PYTHON) tests/oracle/compare.py $(BUILD)/oracle/*.h5
	$(PYTHON) tests/oracle/selftest.py
	$(PYTHON) tests/oracle/compare_paper.py $(BUILD)/oracle/*.h5
	$(PYTHON) tests/oracle/selftest_paper.py

# experiments/report.py on synthetic run files (docs/report.md).
test-report:
	$(PYTHON) tests/report/test_report.py

# The CLI end to end: run files, resume, errors, a tiny experiment.
test-e2e: $(BIN)
	SEQEIG=$(BIN) $(PYTHON) tests/e2e/test_cli.py
	SEQEIG=$(BIN) $(PYTHON) tests/e2e/test_reliability.py
	SEQEIG=$(BIN) $(PYTHON) tests/e2e/test_experiment.py

# The layering rules of docs/extending.md (engine includes nothing above it, ...).
check-layers:
	@bash scripts/check_layers.sh

test-generic:
	@$(MAKE) --no-print-directory ARCH=generic test-c

asan: deps
	@$(MAKE) --no-print-directory BUILD=build-asan OPT="-O1 -fno-omit-frame-pointer" \
	  EXTRA_CFLAGS="-fsanitize=address,undefined -fno-sanitize-recover=all" \
	  EXTRA_LDFLAGS="-fsanitize=address,undefined" test-c-asan

test-c-asan: $(TEST_BIN) $(BIN)
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 CK_TIMEOUT_MULTIPLIER=10 \
	  OMP_NUM_THREADS=2 $(TEST_BIN)
	ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 UBSAN_OPTIONS=print_stacktrace=1 SEQEIG=$(BIN) \
	  $(PYTHON) tests/e2e/test_cli.py
	ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 UBSAN_OPTIONS=print_stacktrace=1 SEQEIG=$(BIN) \
	  $(PYTHON) tests/e2e/test_reliability.py

# libFuzzer targets (fuzz/*.c), built with clang against the project's
# sources compiled with clang, ASan and UBSan into $(FUZZ_BUILD)/; seeds:
# the committed presets and run files trained on the MQAR smoke configs.
FUZZ_CC ?= clang-14
FUZZ_BUILD := build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_CFLAGS = -std=c17 -O1 -g -fno-omit-frame-pointer $(MARCH) -fopenmp -Wall -Wextra -Werror -D_GNU_SOURCE \
              -I$(OPENBLAS_INC) $(PKG_CFLAGS) -MMD -MP -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_OBJ := $(patsubst %.c,$(FUZZ_BUILD)/obj/%.o,$(ENGINE_SRC) $(APP_SRC))
FUZZ_BIN := $(patsubst fuzz/%.c,$(FUZZ_BUILD)/%,$(wildcard fuzz/fuzz_*.c))

check-deps-fuzz:
	@bash scripts/deps.sh --check fuzz

$(FUZZ_BUILD)/obj/%.o: %.c | check-deps-fuzz
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c $< -o $@

$(FUZZ_BUILD)/libseqeig_fuzz.a: $(FUZZ_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(FUZZ_BUILD)/fuzz_%: fuzz/fuzz_%.c $(FUZZ_BUILD)/libseqeig_fuzz.a | check-deps-fuzz
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer $< $(FUZZ_BUILD)/libseqeig_fuzz.a -o $@ $(LDLIBS_BASE)

fuzz-build: $(FUZZ_BIN)

# Each target for FUZZ_SECONDS on its corpus ($(FUZZ_BUILD)/corpus/, kept
# between runs); a crash stops it and leaves the input in $(FUZZ_BUILD)/artifacts/.
fuzz: $(FUZZ_BIN) $(BIN)
	@bash fuzz/run.sh $(FUZZ_BUILD) $(BIN) $(FUZZ_SECONDS)

# The short run inside `make test`.
test-fuzz:
	@FUZZ_FRESH=1 $(MAKE) --no-print-directory fuzz FUZZ_SECONDS=$${TEST_FUZZ_SECONDS:-5}

bench: deps $(BENCH_BIN)
	@bash bench/run.sh $(BUILD)

clean:
	rm -rf build build-generic build-asan build-fuzz

-include $(LIB_OBJ:.o=.d) $(TEST_OBJ:.o=.d) $(BUILD)/obj/app/main.d
ifneq ($(filter fuzz fuzz-build test-fuzz $(FUZZ_BUILD)/%,$(MAKECMDGOALS)),)
-include $(FUZZ_OBJ:.o=.d) $(FUZZ_BIN:=.d)
endif
