# tfprune: `make demo` and `make test` set everything up on a fresh clone.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-dev
BENCH_STAMP := $(VENV)/.installed-bench
ARM_SYSROOT := .arm64-sysroot
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: demo test bench arm-tools arm-check install clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e ".[dev,bench]"
	@touch $(BENCH_STAMP)

demo: $(STAMP)
	$(PY) examples/demo.py --out demo_output

# The suite runs on both Keras backends it supports: TensorFlow, then JAX (TensorFlow-only tests skip with a reason).
# As root it first sets up the ARM tools (arm-tools, then the aarch64 sysroot), with which tests count instructions
# under qemu and run sparse exports on aarch64 LiteRT; elsewhere those tests skip, saying so.
test: $(STAMP)
	@[ "$$(id -u)" != 0 ] || $(MAKE) --no-print-directory arm-tools >/dev/null 2>&1 || echo "could not set up qemu-user, gcc and arm64 apt"
	@[ "$$(id -u)" != 0 ] || [ -f $(ARM_SYSROOT)/.complete ] || \
		$(PY) -c "from tfprune.deploy.aarch64 import build_sysroot; build_sysroot('$(ARM_SYSROOT)')" >/dev/null 2>&1 || \
		echo "could not build the aarch64 sysroot: the aarch64 tests skip"
	KERAS_BACKEND=tensorflow $(PY) -m pytest -q -n 2 --durations=10 tests
	KERAS_BACKEND=jax $(PY) -m pytest -q -n 2 --durations=10 -rs tests

# The benchmarks read MNIST: found in $$TFPRUNE_MNIST_DIR or ../shared/datasets/mnist, else downloaded once.
bench: $(BENCH_STAMP)
	$(PY) -c "from tfprune.data import download_mnist; print('MNIST in', download_mnist())"
	$(PY) benchmarks/training_overhead.py
	$(PY) benchmarks/deploy_lenet.py
	$(PY) benchmarks/structured_latency.py
	$(PY) benchmarks/structured_criteria.py
	$(PY) benchmarks/l0_lenet.py
	$(PY) benchmarks/lottery_lenet.py
	$(PY) benchmarks/rewinding_modes.py
	$(PY) benchmarks/rewinding_channels.py

# qemu-user, gcc (for the counting plugin) and arm64 packages in apt: needs root.
arm-tools:
	command -v qemu-aarch64 >/dev/null && command -v qemu-x86_64 >/dev/null && command -v gcc >/dev/null || \
		(apt-get update -q && apt-get install -y -q qemu-user gcc)
	dpkg --print-foreign-architectures | grep -qx arm64 || (dpkg --add-architecture arm64 && apt-get update -q)

# aarch64 LiteRT under qemu-user vs x86 (outputs), then aarch64 instructions per inference of the same models.
arm-check: $(STAMP) arm-tools
	$(PY) benchmarks/arm_parity.py --sysroot $(ARM_SYSROOT)
	$(PY) benchmarks/arm_instructions.py --sysroot $(ARM_SYSROOT)

clean:
	rm -rf $(VENV) $(ARM_SYSROOT) demo_output .pytest_cache
