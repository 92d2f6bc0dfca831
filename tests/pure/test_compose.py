"""docker-compose.yml, Dockerfile and the shared Flink config.yaml, checked without Docker or network.

The Compose file is validated against the Compose Specification's JSON Schema, kept in the
repository at ``tests/data/compose-spec.json`` (source, commit and license: ``tests/data/README.md``).
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from flink_llm_udf.tools.cluster import CONFIG_PATH, StandaloneCluster, flatten_config

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
README = REPO / "README.md"

#: Services the README and the project brief promise.
PROMISED_SERVICES = {"jobmanager", "taskmanager", "simulator", "sql-client", "ollama"}
FLINK_SERVICES = ("jobmanager", "taskmanager", "sql-client")

#: Everything the compose file may change in config.yaml: container addresses and the venv.
CONTAINER_OVERRIDES = {
    "jobmanager.rpc.address": "jobmanager",
    "jobmanager.bind-host": "0.0.0.0",
    "taskmanager.bind-host": "0.0.0.0",
    "rest.address": "jobmanager",
    "rest.bind-address": "0.0.0.0",
    "python.executable": "/opt/flink-llm/venv/bin/python",
    "python.client.executable": "/opt/flink-llm/venv/bin/python",
}

#: Keys StandaloneCluster and the UDFs rely on, with the values they expect where it matters.
REQUIRED_KEYS: dict[str, Any] = {
    "env.java.opts.all": None,
    "jobmanager.rpc.address": "127.0.0.1",
    "jobmanager.rpc.port": 6123,
    "jobmanager.bind-host": "127.0.0.1",
    "jobmanager.memory.process.size": None,
    "taskmanager.bind-host": "127.0.0.1",
    "taskmanager.numberOfTaskSlots": 2,
    "taskmanager.memory.process.size": None,
    "taskmanager.memory.managed.fraction": None,
    "parallelism.default": 1,
    "rest.address": "127.0.0.1",
    "rest.bind-address": "127.0.0.1",
    "rest.port": 8081,
    "restart-strategy.type": "fixed-delay",
    "restart-strategy.fixed-delay.attempts": None,
    "restart-strategy.fixed-delay.delay": None,
    "metrics.reporter.prom.factory.class": "org.apache.flink.metrics.prometheus.PrometheusReporterFactory",
    "metrics.reporter.prom.port": "9249-9260",
    "python.fn-execution.arrow.batch.size": None,
    "python.fn-execution.bundle.size": None,
    "python.fn-execution.bundle.time": None,
    "table.exec.async-scalar.max-concurrent-operations": None,
}

#: Keys that must NOT be in the shared file (each would break one of its two users).
FORBIDDEN_KEYS = {
    "taskmanager.host",  # containers advertise their own IP
    "python.executable",  # differs: the wheel's venv vs the image's
    "python.client.executable",
    "env.log.dir",  # FLINK_LOG_DIR decides
    "execution.checkpointing.interval",  # jobs decide
}


#: The Compose Specification's JSON Schema, a copy inside the repository.
COMPOSE_SPEC = REPO / "tests" / "data" / "compose-spec.json"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    return flatten_config(yaml.safe_load(CONFIG_PATH.read_text()))


def _validator() -> jsonschema.Draft7Validator:
    schema = json.loads(COMPOSE_SPEC.read_text())
    return jsonschema.Draft7Validator(schema)


def test_compose_file_matches_the_compose_specification(compose: dict[str, Any]) -> None:
    errors = sorted(_validator().iter_errors(compose), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors)


def test_schema_check_catches_mistakes(compose: dict[str, Any]) -> None:
    broken = copy.deepcopy(compose)
    broken["services"]["jobmanager"]["portz"] = ["8081:8081"]
    broken["services"]["taskmanager"]["depends_on"]["jobmanager"]["condition"] = "whenever"
    assert len(list(_validator().iter_errors(broken))) >= 2


def services_named_in_readme(text: str) -> set[str]:
    """Service names in the README's ``docker compose ...`` commands (``--scale`` targets too)."""
    with_values = {
        "--scale",
        "--profile",
        "-f",
        "--file",
        "-p",
        "--project-name",
        "-e",
        "--env",
        "-u",
        "--user",
        "-w",
        "--workdir",
        "--entrypoint",
        "--name",
        "-v",
        "--volume",
    }
    names: set[str] = set()
    for command in re.findall(r"docker[ -]compose\b([^\n`#]*)", text):
        tokens = command.split()
        positional: list[str] = []
        i = 0
        while i < len(tokens):
            token = tokens[i]
            if token == "--scale" and i + 1 < len(tokens):
                names.add(tokens[i + 1].split("=")[0])
                i += 2
                continue
            if token.startswith("--scale="):
                names.add(token.split("=")[1])
            elif token in with_values:
                i += 2
                continue
            elif not token.startswith("-"):
                positional.append(token)
            i += 1
        if not positional:
            continue
        verb, args = positional[0], positional[1:]
        if verb in ("run", "exec"):
            args = args[:1]  # the rest is the command run inside the service
        elif verb not in ("up", "start", "stop", "restart", "logs", "build", "pull", "create", "rm", "kill"):
            args = []
        names.update(a for a in args if re.fullmatch(r"[a-z][a-z0-9_-]*", a))
    return names


def test_readme_service_parser() -> None:
    text = """
    docker compose up -d --scale taskmanager=2 jobmanager
    `docker compose run --rm sql-client bin/sql-client.sh -f x.sql`
    docker compose --profile ollama up -d   # ollama here is a profile
    docker compose exec jobmanager flink run -py job.py
    """
    assert services_named_in_readme(text) == {"taskmanager", "jobmanager", "sql-client"}


def test_every_promised_service_exists(compose: dict[str, Any]) -> None:
    promised = set(PROMISED_SERVICES)
    if README.is_file():
        promised |= services_named_in_readme(README.read_text())
    missing = promised - set(compose["services"])
    assert not missing, f"docker-compose.yml lacks services promised by the README/brief: {sorted(missing)}"


def test_profiles_and_scaling(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["sql-client"]["profiles"] == ["sql"]
    assert services["ollama"]["profiles"] == ["ollama"]
    assert "profiles" not in services["jobmanager"] and "profiles" not in services["taskmanager"]
    # `--scale taskmanager=N` must not collide on a fixed container name or host port.
    tm = services["taskmanager"]
    assert "container_name" not in tm
    assert all(str(p).split(":")[-2].count("-") == 1 for p in tm.get("ports", []))
    assert services["sql-client"]["command"] == ["bin/sql-client.sh"]
    assert "flink_llm_udf.simulator" in services["simulator"]["entrypoint"]


def _flink_properties(service: dict[str, Any]) -> dict[str, str]:
    text = service["environment"]["FLINK_PROPERTIES"]
    pairs = [line.split(":", 1) for line in text.splitlines() if line.strip()]
    return {key.strip(): value.strip() for key, value in pairs}


def test_containers_override_only_addresses_and_python(
    compose: dict[str, Any], config: dict[str, Any]
) -> None:
    for name in FLINK_SERVICES:
        props = _flink_properties(compose["services"][name])
        assert props == CONTAINER_OVERRIDES, name
        # The image's entrypoint deletes all whitespace in each line.
        assert not any(re.search(r"\s", value) for value in props.values())
    for key in CONTAINER_OVERRIDES:
        assert key in config or key in FORBIDDEN_KEYS, key


def test_api_key_comes_from_a_secret_file_not_the_environment(compose: dict[str, Any]) -> None:
    assert "openai_api_key" in compose["secrets"]
    for name in ("jobmanager", "taskmanager"):
        service = compose["services"][name]
        env = service["environment"]
        assert env["OPENAI_API_KEY_FILE"] == "/run/secrets/openai_api_key"
        assert "openai_api_key" in service["secrets"]
    for name, service in compose["services"].items():
        assert "OPENAI_API_KEY" not in (service.get("environment") or {}), name
    assert compose["services"]["taskmanager"]["environment"]["OPENAI_BASE_URL"].endswith(
        "http://simulator:8000/v1}"
    )


def test_host_ports_bind_loopback_only(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name}: {port}"


def _dockerfile_instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            verb, _, rest = line.partition(" ")
            instructions.append((verb.upper(), rest.strip()))
    return instructions


def test_dockerfile_copies_the_cluster_config() -> None:
    copies = [rest.split() for verb, rest in _dockerfile_instructions() if verb == "COPY"]
    targets = {args[-1]: [a for a in args[:-1] if not a.startswith("--")] for args in copies}
    assert targets.get("/opt/flink/conf/config.yaml") == ["flink_llm_udf/tools/cluster/conf/config.yaml"]
    assert (REPO / "flink_llm_udf/tools/cluster/conf/config.yaml").resolve() == CONFIG_PATH


def test_dockerfile_flink_matches_the_pyflink_pin() -> None:
    base = next(rest for verb, rest in _dockerfile_instructions() if verb == "FROM")
    match = re.fullmatch(r"flink:(\d+\.\d+)\.\d+-scala_2\.12-java17", base)
    assert match, base
    pin = re.search(r'"apache-flink==([\d.]+)\.\*"', (REPO / "pyproject.toml").read_text())
    assert pin and pin.group(1) == match.group(1), "the image's Flink must match the PyFlink pin"


def test_dockerfile_bakes_tiktoken_and_installs_the_package() -> None:
    instructions = _dockerfile_instructions()
    env = " ".join(rest for verb, rest in instructions if verb == "ENV")
    assert "TIKTOKEN_CACHE_DIR=" in env and "/opt/flink-llm/venv/bin" in env
    runs = " ".join(rest for verb, rest in instructions if verb == "RUN")
    assert "pip install" in runs and "/opt/flink-llm/src" in runs
    assert "cl100k_base" in runs
    assert instructions[-1] == ("USER", "flink")


def test_config_yaml_has_the_keys_the_cluster_relies_on(config: dict[str, Any]) -> None:
    for key, expected in REQUIRED_KEYS.items():
        assert key in config, key
        if expected is not None:
            assert config[key] == expected, key
    assert not FORBIDDEN_KEYS & set(config), FORBIDDEN_KEYS & set(config)
    assert str(config["jobmanager.memory.process.size"]) == "1024m"
    assert str(config["taskmanager.memory.process.size"]) == "4096m"
    assert 0 < float(config["taskmanager.memory.managed.fraction"]) < 1


def test_standalone_config_adds_loopback_ports_and_python(tmp_path: Path) -> None:
    cluster = StandaloneCluster(
        tmp_path,
        rest_port=18081,
        rpc_port=16123,
        python="/venv/bin/python",
        config={"parallelism.default": 2},
    )
    effective = cluster.effective_config()
    assert effective["taskmanager.host"] == "127.0.0.1"
    assert effective["rest.port"] == 18081 and effective["jobmanager.rpc.port"] == 16123
    assert effective["python.executable"] == effective["python.client.executable"] == "/venv/bin/python"
    assert effective["parallelism.default"] == 2
    cluster.prepare()
    written = yaml.safe_load((cluster.conf_dir / "config.yaml").read_text())
    assert written == effective
    assert (cluster.conf_dir / "log4j.properties").is_file()
    assert (cluster.plugins_dir / "metrics-prometheus").is_dir()
    assert (cluster.conf_dir / "masters").read_text() == "127.0.0.1:18081\n"


def test_cluster_daemons_never_get_the_api_key_from_the_environment(tmp_path, monkeypatch, caplog):
    """Flink logs its processes' environment: a key exported by the user must not reach it."""
    from flink_llm_udf.tools.cluster import StandaloneCluster

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-must-not-reach-flink-0123456789")
    monkeypatch.setenv("OPENAI_API_KEY_FILE", "/run/secrets/openai")
    with caplog.at_level("WARNING"):
        env = StandaloneCluster(workdir=tmp_path).flink_env()
    assert "OPENAI_API_KEY" not in env
    assert env["OPENAI_API_KEY_FILE"] == "/run/secrets/openai"
    assert "OPENAI_API_KEY_FILE" in caplog.text
    assert "sk-test-must-not" not in caplog.text
