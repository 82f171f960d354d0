# pervade: `make demo` runs the example workflow, `make test` runs every test.
# Both install what is missing (Debian packages with apt-get, Python packages with pip) and build.

PYTHON ?= python3
BUILD_DIR ?= build
# Debian packages the build and tests need (checked with dpkg, installed only when missing);
# graphviz: parsl-visualize draws its DAG pages with dot (tests/python/test_monitoring_visualize.py);
# libcurl4-openssl-dev, libssl-dev: staging's transfers (src/staging); rsync, openssh-server,
# openssh-client: RSyncStaging over ssh to a test host (tests/python/test_staging_hosts.py).
# mpich, libmpich-dev: real MPI programs in the MPI tests (tests/python/test_mpi_cluster.py).
APT_PACKAGES := g++ cmake ninja-build libgtest-dev libfmt-dev libmsgpack-cxx-dev libzmq3-dev cppzmq-dev libsqlite3-dev parallel graphviz \
	libcurl4-openssl-dev libssl-dev rsync openssh-server openssh-client git mpich libmpich-dev
# pyftpdlib: the FTP server of the staging tests (tests/python/staging_servers.py). mpi4py: an
# MPI app in Python (tests/python/test_mpi_cluster.py), built from source against MPICH (--no-binary:
# its wheels need a libmpi.so.12 that Debian names libmpich.so.12; -O0: its one big C file then
# compiles in a fraction of the time, and the tests need no speed from it).
PY_PACKAGES := nanobind scikit-build-core cloudpickle msgpack pytest typeguard pyftpdlib mpi4py pyzmq

.PHONY: all deps build python test test-cpp test-python demo perf bench bench-htex compat compat-tutorial clean

all: build python

deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	fi
	@$(PYTHON) -c "import nanobind, scikit_build_core, cloudpickle, msgpack, pytest, typeguard, pyftpdlib, mpi4py, zmq" 2>/dev/null || \
	  CFLAGS="-O0 -g0" $(PYTHON) -m pip install -q --no-binary mpi4py $(PY_PACKAGES)

# The C++ library, its GoogleTest suite and the C++ benchmark.
build: deps
	cmake -S . -B $(BUILD_DIR) -G Ninja -DPERVADE_BUILD_TESTS=ON -DCMAKE_BUILD_TYPE=Release
	cmake --build $(BUILD_DIR) -j2

# The Python package with its C++ extension, into the current interpreter.
python: deps
	$(PYTHON) -m pip install --no-build-isolation -q .

test-cpp: build python  # the pool tests run the installed Python worker
	cd $(BUILD_DIR) && ctest --output-on-failure -j2

test-python: python
	$(PYTHON) -m pytest -q tests/python

test: test-cpp test-python

demo: python
	$(PYTHON) examples/demo.py

perf: python
	$(PYTHON) -m pervade.perf --time 5

# Peer comparison: installs Parsl into its own virtual environment (see BENCHMARKS.md).
bench: build python
	$(PYTHON) benchmarks/compare_threads.py

# HighThroughputExecutor vs Parsl's HTEX, Dask and Ray; installs the peers into the same venv
# (see benchmarks/README.md). Only the Python package is needed: it carries pervade-pool.
bench-htex: python
	$(PYTHON) benchmarks/compare_htex.py

# Parsl's own user-facing tests run against pervade through `pervade run` (docs/compat.md): installs
# Parsl from PyPI into compat/.venv; not part of `make test`. COMPAT_ARGS: e.g. --modes threads --engines pervade,parsl.
compat: python
	$(PYTHON) compat/run.py $(COMPAT_ARGS)

# Parsl's tutorial notebooks, cell by cell, on Parsl and on pervade (docs/compat.md); clones
# github.com/Parsl/parsl-tutorial into TUTORIAL when it is not there. TUTORIAL_ARGS: e.g. --venv DIR.
TUTORIAL ?= compat/parsl-tutorial
compat-tutorial: python
	test -d $(TUTORIAL) || git clone --depth 1 https://github.com/Parsl/parsl-tutorial $(TUTORIAL)
	$(PYTHON) compat/tutorial.py --tutorial $(TUTORIAL) $(TUTORIAL_ARGS)

clean:
	rm -rf $(BUILD_DIR) runinfo compat/work compat/parsl-tutorial
