# kvlens — the two commands: `make demo` and `make test`. Both install what is missing first.
BUILD ?= build
JOBS  ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: deps build demo test bench reasoner clean

deps:
	@bash scripts/deps.sh

build: deps
	@cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

demo: build
	@bash scripts/demo.sh $(BUILD)

test: build
	@cd $(BUILD) && ctest -L unit --output-on-failure -j $(JOBS) && ctest -LE unit --output-on-failure -j $(JOBS)

bench: build
	@$(BUILD)/bin/kvlens bench tap

# The embedded reasoner's recipe (docs/MODEL.md): about 4 h on 2 cores (24,800 steps); stop any time, rerun to resume.
reasoner: build
	@bash scripts/train-reasoner.sh $(BUILD)

clean:
	rm -rf $(BUILD)
