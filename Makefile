# modpy_safe: the two commands are 'make run' and 'make test'.
# Both install what is missing first (Debian packages as root, then .venv).
PY      := .venv/bin/python
MPM     ?= prefork
PORT    ?= 8080
STATE   ?= .run
HANDLERS ?=
PYTEST_ARGS ?=

.PHONY: help run stop test test-fast bench lint clean setup

help:
	@echo "make run    start the example site on http://127.0.0.1:$(PORT)/ (MPM=prefork|worker|event, HANDLERS=dir)"
	@echo "make stop   stop what 'make run' started"
	@echo "make test   run the whole test suite through real httpd and PostgreSQL"
	@echo "make bench  side-by-side benchmarks against plain mod_python (QUICK=1 for a short run)"

setup:
	@tools/bootstrap.sh test

run:
	@tools/bootstrap.sh run
	@$(PY) apache/serve.py --mpm $(MPM) --port $(PORT) --state $(STATE) $(if $(HANDLERS),--handlers $(HANDLERS),)

stop:
	@$(PY) apache/serve.py --stop --state $(STATE)

test:
	@tools/bootstrap.sh test
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast:
	@tools/bootstrap.sh test
	$(PY) -m pytest -m "not httpd and not browser" $(PYTEST_ARGS)

bench:
	@tools/bootstrap.sh bench
	$(PY) bench/run.py $(if $(QUICK),--quick,)

lint:
	@tools/bootstrap.sh test
	$(PY) -m pip install -q -e ".[lint]"
	$(PY) -m mypy
	$(PY) -m ruff check modpy_safe tests

clean:
	rm -rf .venv .run build *.egg-info .pytest_cache
