"""deploy/ against real processes: the dashboard and the alert rules name only metrics the
components export, the database roles of deploy/sql/roles.sql are enough for each component,
and every component's Kafka clients honour the IOC_KAFKA_* security settings.

The components run as the deployments run them: separate `ioc` processes with
KAFKA_BOOTSTRAP_SERVERS, DATABASE_URL (ioc_app or ioc_reader) and IOC_KAFKA_SECURITY_PROTOCOL
set, against the session broker and a fresh database.
"""

from __future__ import annotations

import json
import re
import subprocess
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import yaml

from ioc.embedded.postgres import postgres_bin_dir
from tests.plugins.services import CliResult, IocProcess, wait_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
# Metrics the deployment reads from other exporters, not from ioc components.
EXTERNAL_METRICS = {
    "up": "Prometheus itself (scrape health)",
    "kafka_consumergroup_lag_sum": "kafka-exporter / Strimzi Kafka Exporter",
}
TOKEN_SECRET = "deploy-test-secret-0123456789abcdef"
APP_PASSWORD, READER_PASSWORD = "app-pw-1", "reader-pw-1"
# Each component, the line it prints with its bound port, and its port setting (0: any).
COMPONENTS = {
    "worker": (r"worker metrics: http://[^:]+:(\d+)/", "IOC_WORKER_METRICS_PORT"),
    "writer": (r"writer metrics: http://[^:]+:(\d+)/", "IOC_WRITER_METRICS_PORT"),
    "notifier": (r"notifier metrics: http://[^:]+:(\d+)/", "IOC_NOTIFIER_METRICS_PORT"),
    "gateway": (r"gateway: wall http://[^:]+:(\d+)/", "IOC_GATEWAY_PORT"),
    "ingest-api": (r"ingest API listening on http://[^:]+:(\d+)", "IOC_INGEST_PORT"),
}
READ_ONLY = {"gateway", "ingest-api"}


def promql_metric_names(text: str) -> set[str]:
    """Metric names in PromQL expressions: ours start with ioc_, the exporters' are listed."""
    names = set(re.findall(r"\b(ioc_[a-z0-9_]+)\b", text))
    names |= {n for n in EXTERNAL_METRICS if re.search(rf"\b{n}\b", text)}
    return names


def dashboard_expressions() -> str:
    dashboard = json.loads((DEPLOY / "grafana/dashboards/ioc-platform.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    exprs += [v["definition"] for v in dashboard["templating"]["list"]]
    return "\n".join(exprs)


def rule_expressions() -> str:
    rules = yaml.safe_load((DEPLOY / "prometheus/rules/ioc.rules.yml").read_text())
    return "\n".join(r["expr"] for g in rules["groups"] for r in g["rules"])


def exported_names(exposition: str) -> set[str]:
    """Every sample name a scrape can carry, from the # TYPE lines (also for unlabelled-yet
    families) and the samples themselves; counters get _total, histograms _bucket/_sum/_count."""
    names: set[str] = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, family, kind = line.split()[:4]
            names.add(family)
            if kind == "histogram":
                names |= {f"{family}_bucket", f"{family}_sum", f"{family}_count"}
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def http_get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (loopback)
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


def with_login(url: str, user: str, password: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{parts.hostname}:{parts.port}"))


def apply_roles(database_url: str) -> None:
    """deploy/sql/roles.sql through psql, as the compose init script and the guide run it."""
    result = subprocess.run(
        [
            str(postgres_bin_dir() / "psql"),
            "-v",
            "ON_ERROR_STOP=1",
            "-v",
            f"app_password={APP_PASSWORD}",
            "-v",
            f"reader_password={READER_PASSWORD}",
            "-f",
            str(DEPLOY / "sql/roles.sql"),
            database_url,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def base_env(kafka_bootstrap: str, state_dir: Path) -> dict[str, str]:
    suffix = uuid.uuid4().hex[:8]
    return {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "IOC_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT",
        "IOC_TOPIC_PARTITIONS": "4",
        "IOC_STATE_DIR": str(state_dir),
        "IOC_GATEWAY_TOKEN_SECRET": TOKEN_SECRET,
        "IOC_WORKER_GROUP": f"deploy-worker-{suffix}",
        "IOC_WRITER_GROUP": f"deploy-writer-{suffix}",
        "IOC_NOTIFIER_GROUP": f"deploy-notifier-{suffix}",
        "IOC_WORKER_SESSION_TIMEOUT": "6",
        "IOC_WRITER_SESSION_TIMEOUT": "6",
        "IOC_NOTIFIER_SESSION_TIMEOUT": "6",
    }


@pytest.mark.usefixtures("contract_topics")
def test_components_with_deploy_roles_export_every_metric_the_dashboard_and_rules_read(
    ioc_cli: Callable[..., CliResult],
    ioc_process: Callable[..., IocProcess],
    kafka_bootstrap: str,
    fresh_database: str,
    state_dir: Path,
) -> None:
    """Five components (PLAINTEXT set explicitly, the roles of roles.sql) become healthy, and
    their live /metrics cover every metric name deploy/ queries."""
    apply_roles(fresh_database)
    app_url = with_login(fresh_database, "ioc_app", APP_PASSWORD)
    reader_url = with_login(fresh_database, "ioc_reader", READER_PASSWORD)
    env = base_env(kafka_bootstrap, state_dir)
    migrated = ioc_cli("db", "migrate", env={**env, "DATABASE_URL": app_url})
    assert migrated.returncode == 0, migrated.stderr

    processes: dict[str, IocProcess] = {}
    for name, (_pattern, port_setting) in COMPONENTS.items():
        url = reader_url if name in READ_ONLY else app_url
        component_env = {**env, "DATABASE_URL": url, port_setting: "0"}
        processes[name] = ioc_process(name, env=component_env)

    ports: dict[str, int] = {}

    def all_healthy() -> bool:
        for name, (pattern, _setting) in COMPONENTS.items():
            process = processes[name]
            if process.proc.poll() is not None:
                raise AssertionError(f"ioc {name} exited:\n{process.output()}")
            if name not in ports:
                found = re.search(pattern, process.output())
                if not found:
                    return False
                ports[name] = int(found.group(1))
            if http_get(f"http://127.0.0.1:{ports[name]}/healthz")[0] != 200:
                return False
        return True

    wait_until(all_healthy, timeout=240, what="every component's /healthz to answer 200")

    exported: set[str] = set()
    for name, port in ports.items():
        status, body = http_get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200, name
        exported |= exported_names(body)

    for source, text in (("dashboard", dashboard_expressions()), ("rules", rule_expressions())):
        wanted = promql_metric_names(text)
        missing = sorted(wanted - exported - set(EXTERNAL_METRICS))
        assert not missing, f"the {source} reads metrics no component exports: {missing}"
        assert {n for n in wanted if n.startswith("ioc_")}, source

    # The read-only role really is read-only: the API key table refuses a write.
    denied = subprocess.run(
        [
            str(postgres_bin_dir() / "psql"),
            "-c",
            "DELETE FROM api_keys",
            reader_url,
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert denied.returncode != 0 and "permission denied" in denied.stderr


@pytest.mark.usefixtures("contract_topics")
@pytest.mark.parametrize(
    "command", ["worker", "writer", "notifier", "gateway", "ingest-api", "topics", "simulate"]
)
def test_every_component_uses_the_kafka_security_settings(
    ioc_cli: Callable[..., CliResult],
    kafka_bootstrap: str,
    fresh_database: str,
    state_dir: Path,
    command: str,
) -> None:
    """With SASL_PLAINTEXT set, each component's clients attempt SASL, which the embedded
    broker refuses: the command fails with one broker_unreachable line (so it read the setting;
    the PLAINTEXT run above shows the same command working)."""
    env = {
        **base_env(kafka_bootstrap, state_dir),
        "DATABASE_URL": fresh_database,
        "IOC_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "IOC_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "IOC_KAFKA_SASL_USERNAME": "ioc-test",
        "IOC_KAFKA_SASL_PASSWORD": "not-a-real-password",
        "IOC_CONNECT_TIMEOUT": "5",
    }
    migrated = ioc_cli("db", "migrate", env=env)  # the ingest API checks its table first
    assert migrated.returncode == 0, migrated.stderr
    argv = {
        "topics": ["topics", "create"],
        "simulate": ["simulate", "--count", "10", "--rate", "100"],
    }.get(command, [command])
    for name, (_pattern, port_setting) in COMPONENTS.items():
        if name == command:
            env[port_setting] = "0"
    result = ioc_cli(*argv, env=env, timeout=180)
    assert result.returncode != 0, result.stdout
    stderr = result.stderr
    assert "ioc: error [broker_unreachable]" in stderr, stderr
    assert "Traceback" not in stderr
