# Two commands do all set-up: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.medcnn-installed
RUNS   ?= runs
CHROMIUM ?= /usr/bin/chromium
PYTEST_ARGS ?=

FUZZ_SECONDS ?= 600

.PHONY: demo test lint docs constraints zoo fuzz install browser system-deps fetch-demo bench-scale bench-classify bench-segment bench-enhance bench-transfer bench-infer bench-serve bench-domain clean help

help:
	@echo "make demo   - install, fetch BreastMNIST, train, evaluate, compare with the MedMNIST v2 paper"
	@echo "make test   - install, run the test suite (set MEDCNN_DATA to the data mirror)"
	@echo "make docs   - build the documentation site into site/ (mkdocs-material, --strict)"
	@echo "make zoo    - rebuild the ready-to-use models (src/medcnn/zoo/models/) from the default plans' runs"
	@echo "make bench-scale    - 1 vs 2 training processes (DDP) and peak RAM of predict on large volumes"
	@echo "make fuzz   - mutate real DICOM/NIfTI/PNG/npz files through every reader and predict (FUZZ_SECONDS=600)"
	@echo "make bench-segment  - MSD Hippocampus + DRIVE segmentation benchmark (README table)"
	@echo "make bench-enhance  - MR / CT denoising, low-dose and sparse-view CT, super-resolution vs BM3D, NLM, FBP, bicubic"
	@echo "make bench-classify - 5 MedMNIST datasets x 3 seeds + the official recipe baseline (hours; README table)"
	@echo "make bench-infer    - images/s and latency: MONAI eager vs bf16 vs torch.compile vs ONNX Runtime per task"
	@echo "make bench-domain   - input-domain check: false alarms on own test images, catches of foreign ones"
	@echo "make bench-serve    - load test of medcnn serve (200 requests, 8 concurrent) + workbench screenshots"
	@echo "make bench-transfer - label efficiency (1-100 % of labels, scratch vs medcnn pretrain) + augmentation ablation"

# constraints.txt: the exact versions the tests ran with (regenerate with `make constraints`)
$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c constraints.txt -e ".[test]"
	@touch $(STAMP)

install: $(STAMP) system-deps

# Debian packages the tests use, installed when missing: chromium (the browser tests drive it with
# Playwright, no browser download), orthanc + orthanc-dicomweb (the PACS round-trip tests start
# their own Orthanc; the package's system service is never used), and the GL / GLib libraries the
# OpenCV wheel that rt-utils brings (medcnn[rtstruct]) loads.
APT_NEEDS = $(if $(wildcard $(CHROMIUM)),,chromium) $(if $(wildcard /usr/sbin/Orthanc),,orthanc) \
            $(if $(wildcard /usr/share/orthanc/plugins/libOrthancDicomWeb.so),,orthanc-dicomweb) \
            $(if $(wildcard /usr/lib/*/libGL.so.1),,libgl1) $(if $(wildcard /usr/lib/*/libglib-2.0.so.0),,libglib2.0-0)

system-deps:
	@test -z "$(strip $(APT_NEEDS))" || { \
	  echo "installing Debian packages: $(strip $(APT_NEEDS))"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null 2>&1; then SUDO=sudo; else SUDO=none; fi; \
	  if [ "$$SUDO" = none ] || ! command -v apt-get >/dev/null 2>&1; then \
	    echo "warning: cannot install $(strip $(APT_NEEDS)) here (needs apt-get as root or sudo); their tests will skip (fail in CI)" >&2; \
	  else \
	    $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(APT_NEEDS) >/dev/null \
	      || echo "warning: apt-get install $(strip $(APT_NEEDS)) failed; their tests will skip (fail in CI)" >&2; \
	  fi; }

browser: system-deps

fetch-demo: $(STAMP)
	$(VENV)/bin/medcnn fetch breastmnist

demo: fetch-demo
	$(VENV)/bin/medcnn train breastmnist --out $(RUNS)/demo-breastmnist --overwrite
	$(VENV)/bin/medcnn evaluate $(RUNS)/demo-breastmnist --split test --paper

# ruff (rules in pyproject.toml) on every Python file of the project; import-linter checks the
# architecture's contracts (pyproject.toml [tool.importlinter], docs/architecture.md)
lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench tools
	$(VENV)/bin/lint-imports

# the site (docs/, mkdocs.yml); the CLI and plan reference pages are generated: python tools/docs_reference.py
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

# pin every installed package to its current version (after changing a dependency in pyproject.toml)
constraints: $(STAMP)
	$(PY) -m pip freeze --exclude-editable | grep -v '^medcnn' > constraints.txt

# two pytest-xdist workers, one thread each (tests/conftest.py); TEST_WORKERS=0 runs in one process;
# the 20 slowest tests are listed at the end, to keep the suite near ten minutes
TEST_WORKERS ?= 2
test: $(STAMP) system-deps lint
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadgroup --durations=20 $(PYTEST_ARGS)

bench-scale: $(STAMP)
	MEDCNN_DATA=$${MEDCNN_DATA:-../shared/data} $(PY) bench/scale.py --out $(RUNS)/bench-scale $(BENCH_ARGS)

fuzz: $(STAMP)
	MEDCNN_DATA=$${MEDCNN_DATA:-../shared/data} $(PY) tools/fuzz.py --seconds $(FUZZ_SECONDS) --out fuzz-out $(FUZZ_ARGS)

bench-classify: $(STAMP)
	$(PY) bench/classify.py --out $(RUNS)/bench-classify $(BENCH_ARGS)

bench-transfer: $(STAMP)
	$(PY) bench/transfer.py --out $(RUNS)/bench-transfer $(BENCH_ARGS)

bench-infer: $(STAMP)
	MEDCNN_DATA=$${MEDCNN_DATA:-../shared/data} $(PY) bench/infer.py $(BENCH_ARGS)

bench-serve: $(STAMP) browser
	MEDCNN_DATA=$${MEDCNN_DATA:-../shared/data} $(PY) bench/serve.py $(BENCH_ARGS)

bench-segment: $(STAMP)
	MEDCNN_DATA=$${MEDCNN_DATA:-../shared/data} $(PY) bench/segment.py --out $(RUNS)/bench-segment $(BENCH_ARGS)

# the model zoo (src/medcnn/zoo/models/) from the default plans' runs: trains, packs, evaluates, writes the cards
zoo: $(STAMP)
	MEDCNN_DATA=$${MEDCNN_DATA:-../shared/data} $(PY) bench/zoo.py --out $(RUNS)/bench-zoo $(BENCH_ARGS)

bench-domain: $(STAMP)
	MEDCNN_DATA=$${MEDCNN_DATA:-../shared/data} $(PY) bench/domain.py --out $(RUNS)/bench-domain $(BENCH_ARGS)

bench-enhance: $(STAMP)
	MEDCNN_DATA=$${MEDCNN_DATA:-../shared/data} $(PY) bench/enhance.py --out $(RUNS)/bench-enhance $(BENCH_ARGS)

clean:
	rm -rf $(RUNS) .pytest_cache
