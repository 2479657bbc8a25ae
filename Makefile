# Two entry points for a fresh machine: `make demo` and `make test`.
# Each sets up its own virtual environment in .venv (about 2 minutes, 2.5 GB).

VENV ?= .venv
BIN := $(VENV)/bin
# The de-identification secret for the demo: a random key kept outside the repo,
# made once per machine. Real data: set THYROKIT_SECRET or THYROKIT_SECRET_FILE yourself.
DEMO_KEY ?= $(HOME)/.config/thyrokit/demo.key

.PHONY: demo test venv clean-demo

venv: $(VENV)/.installed

# torch first, pinned to the CPU build on the local index: a plain `torch`
# requirement would pull a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[server,privacy,dev]"
	touch $@

$(DEMO_KEY): | venv
	mkdir -p $(dir $(DEMO_KEY))
	umask 077 && $(BIN)/python -c "import secrets; print(secrets.token_hex(32))" > $(DEMO_KEY)

demo: venv $(DEMO_KEY)
	@if [ -z "$$THYROKIT_SECRET$$THYROKIT_SECRET_FILE" ]; then echo "using the demo secret in $(DEMO_KEY)"; fi
	THYROKIT_SECRET_FILE=$${THYROKIT_SECRET_FILE:-$(DEMO_KEY)} PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/dvc repro
	@echo
	@$(BIN)/python -c "import json; s = json.load(open('data/release/summary.json')); \
	print('images per split:  ', s['images']); print('patients per split:', s['patients'])"
	@echo "The release is in $(CURDIR)/data/release (dataset card: data/release/card.html)."
	@echo "Every stage's figures: $(BIN)/dvc metrics show; plots: $(BIN)/dvc plots show"

test: venv
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m pytest

clean-demo:
	rm -rf data/raw data/interim data/private data/models data/metrics data/plots data/release
