# Thin front door over CMake. Every target installs what it needs from Debian's packages first
# (scripts/install-deps.sh is idempotent and touches apt only when something is missing).
BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= $(shell nproc)
SOURCES    := $(shell git ls-files -co --exclude-standard -- 'src/*.[ch]' 'tests/*.[ch]' 2>/dev/null)

.PHONY: all build test unit demo bench format format-check asan clean

all: build

build:
	@scripts/install-deps.sh build
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

asan:
	@scripts/install-deps.sh test
	@cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DIC_SANITIZE=ON >/dev/null
	@cmake --build $(ASAN_BUILD) -j $(JOBS)

# Every test, twice: the optimised build, then under AddressSanitizer + UndefinedBehaviorSanitizer.
test:
	@scripts/install-deps.sh test
	@$(MAKE) --no-print-directory format-check build asan
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS)
	@cd $(ASAN_BUILD) && ctest --output-on-failure -j $(JOBS)

unit: build
	@cd $(BUILD) && ctest --output-on-failure -L unit

demo:
	@scripts/install-deps.sh test
	@$(MAKE) --no-print-directory build
	@scripts/demo.sh

bench:
	@scripts/install-deps.sh bench
	@cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build build-bench -j $(JOBS)
	@bench/run.sh build-bench/integration_cache

format:
	@clang-format -i $(SOURCES)

format-check:
	@clang-format --dry-run -Werror $(SOURCES)
	@! grep -nE '\b(sprintf|strcpy|strcat|atoi|strtok|gets)[[:space:]]*\(' $(SOURCES) \
	  || { echo "banned call (use snprintf, strtol, buf_*): see STYLE.md" >&2; exit 1; }

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) build-bench
