# Two entry points that work on a fresh machine (Python 3.11 + pip):
#   make demo   short ESRGAN+SSL demo training + evaluation on images bundled with scikit-image
#   make test   the whole test suite (CPU)
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed

# Tests share one persistent XLA compilation cache so repeated shapes compile once per session.
export JAX_COMPILATION_CACHE_DIR ?= $(CURDIR)/.jax_cache
export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS ?= 0.5
DEMO_DIR ?= workdirs/demo
PYTEST_ARGS ?=

.PHONY: demo test install bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,torch]'
	# DISTS weights (weights.pt) ship in this wheel; --no-deps because it would pull torchvision,
	# which breaks beside torch 2.13.0. The package itself is never imported.
	$(PY) -m pip install -q --no-deps dists-pytorch==0.1
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) train.py --config configs/esrgan_ssl.py:demo --workdir $(DEMO_DIR)
	$(PY) eval.py --checkpoint $(DEMO_DIR) --datasets demo --out $(DEMO_DIR)/eval

test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile $(PYTEST_ARGS)

# Each benchmark prints ratios against a baseline measured in the same run; see BENCHMARKS.md.
bench: $(STAMP)
	$(PY) benchmarks/ssl_speed.py
	$(PY) benchmarks/models_speed.py --size 128 --repeats 2
	$(PY) benchmarks/discriminators_speed.py
	$(PY) benchmarks/data_speed.py --batches 40
	$(PY) benchmarks/train_speed.py --steps 5
	$(PY) benchmarks/eval_speed.py --data_root ../shared/data --urban100_images 2

clean:
	rm -rf $(VENV) .jax_cache workdirs
