"""Settings: defaults, the environment over .env, and one clear error per bad value."""

from __future__ import annotations

from pathlib import Path

import pytest
from kombu import Connection

from celery_tasks.core.errors import ConfigError
from celery_tasks.core.settings import load_settings


def test_defaults_are_rabbitmqs_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = load_settings({})
    assert (s.rabbitmq_host, s.rabbitmq_port, s.rabbitmq_user, s.rabbitmq_vhost) == (
        "localhost", 5672, "guest", "/")
    assert s.broker_url == "amqp://guest:guest@localhost:5672/%2F"
    assert s.result_backend == "rpc://"


def test_dotenv_file_is_read_and_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text("RABBITMQ_HOST=filehost\nRABBITMQ_PORT=5673\n")
    monkeypatch.chdir(tmp_path)
    s = load_settings({"RABBITMQ_PORT": "5674"})
    assert (s.rabbitmq_host, s.rabbitmq_port) == ("filehost", 5674)


def test_env_file_path_can_be_named(tmp_path: Path) -> None:
    env_file = tmp_path / "custom.env"
    env_file.write_text("RABBITMQ_USER=alice\n")
    assert load_settings({"CELERY_TASKS_ENV_FILE": str(env_file)}).rabbitmq_user == "alice"


def test_missing_named_env_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="CELERY_TASKS_ENV_FILE"):
        load_settings({"CELERY_TASKS_ENV_FILE": str(tmp_path / "absent.env")})


@pytest.mark.parametrize("port", ["abc", "0", "70000", "5672.5"])
def test_bad_port_names_the_variable(port: str) -> None:
    with pytest.raises(ConfigError, match="RABBITMQ_PORT"):
        load_settings({"RABBITMQ_PORT": port, "CELERY_TASKS_ENV_FILE": ""})


def test_bad_connect_timeout_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="BROKER_CONNECT_TIMEOUT"):
        load_settings({"BROKER_CONNECT_TIMEOUT": "soon"})


def test_unknown_key_in_dotenv_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("RABBITMQ_HOTS=typo\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="unknown setting RABBITMQ_HOTS"):
        load_settings({})


def test_a_dotenv_that_is_not_utf8_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_bytes(b"RABBITMQ_HOST=h\xf6st\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"cannot read .*\.env"):
        load_settings({})


def test_password_with_url_special_characters_survives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    password, user = "p@ss:w/rd%#?&= x", "us@er"
    s = load_settings({"RABBITMQ_PASSWORD": password, "RABBITMQ_USER": user,
                       "RABBITMQ_VHOST": "my/vhost"})
    conn = Connection(s.broker_url)
    assert (conn.userid, conn.password, conn.virtual_host) == (user, password, "my/vhost")


def test_article_password_name_is_an_alias(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_settings({"RABBITMQ_PWD": "secret1"}).rabbitmq_password == "secret1"
    both = {"RABBITMQ_PWD": "old", "RABBITMQ_PASSWORD": "new"}
    assert load_settings(both).rabbitmq_password == "new"


def test_the_environments_alias_wins_over_the_files_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("RABBITMQ_PASSWORD=from-file\n")
    assert load_settings({"RABBITMQ_PWD": "from-env"}).rabbitmq_password == "from-env"
    assert load_settings({}).rabbitmq_password == "from-file"


def test_a_broker_url_names_the_host_port_and_password_used_everywhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    s = load_settings({"CELERY_BROKER_URL": "amqps://bob:s%40cret@mq.example:5671/prod",
                       "RABBITMQ_HOST": "ignored", "RABBITMQ_PASSWORD": "other"})
    assert s.broker_address == "mq.example:5671"
    assert (s.rabbitmq_user, s.rabbitmq_vhost) == ("bob", "prod")
    assert s.tls_options()["server_hostname"] == "mq.example"
    assert "s@cret" not in s.redact("auth failed for s@cret") and "s%40cret" not in s.redact(
        f"cannot reach {s.broker_url}")
    bare = load_settings({"CELERY_BROKER_URL": "amqp://h", "RABBITMQ_VHOST": "prod",
                          "RABBITMQ_USER": "bob"})
    assert (bare.broker_address, bare.rabbitmq_user, bare.rabbitmq_vhost) == ("h:5672", "guest",
                                                                              "/")  # as kombu
    failover = load_settings({"CELERY_BROKER_URL": "amqp://a:1//;amqp://b:2//"})
    assert (failover.broker_address, failover.rabbitmq_vhost) == ("a:1, b:2", "/")
    with pytest.raises(ConfigError, match="CELERY_BROKER_URL must name a host"):
        load_settings({"CELERY_BROKER_URL": "amqp:///vhost"})


def test_several_hosts_make_a_failover_url_with_every_node(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cluster: RABBITMQ_HOST lists its nodes; clients get kombu's failover list."""
    monkeypatch.chdir(tmp_path)
    s = load_settings({"RABBITMQ_HOST": "rabbitmq-1, rabbitmq-2:5673,rabbitmq-3",
                       "RABBITMQ_PASSWORD": "p@ss;w", "RABBITMQ_VHOST": "v"})
    assert s.broker_url == ";".join(f"amqp://guest:p%40ss%3Bw@{node}/v" for node in (
        "rabbitmq-1:5672", "rabbitmq-2:5673", "rabbitmq-3:5672"))
    assert s.broker_address == "rabbitmq-1:5672, rabbitmq-2:5673, rabbitmq-3:5672"
    assert Connection(s.broker_url).alt == s.broker_url.split(";")  # kombu sees three nodes


@pytest.mark.parametrize("hosts", ["a,,b", "a,b:", "a,b:x", "a b", "a,b:70000"])
def test_a_bad_host_list_names_the_variable(hosts: str) -> None:
    with pytest.raises(ConfigError, match="RABBITMQ_HOST"):
        load_settings({"RABBITMQ_HOST": hosts, "CELERY_TASKS_ENV_FILE": ""})


def test_tls_takes_one_host() -> None:
    with pytest.raises(ConfigError, match="RABBITMQ_TLS takes one RABBITMQ_HOST"):
        load_settings({"RABBITMQ_HOST": "a,b", "RABBITMQ_TLS": "true",
                       "CELERY_TASKS_ENV_FILE": ""})


@pytest.mark.parametrize(("text", "size"), [("16MiB", 16 * 2**20), ("128 MiB", 128 * 2**20),
                                             ("2097152", 2 * 2**20), ("1024KiB", 2**20)])
def test_the_message_size_limit_takes_bytes_or_units(text: str, size: int) -> None:
    settings = load_settings({"CELERY_TASKS_MAX_MESSAGE_SIZE": text, "CELERY_TASKS_ENV_FILE": ""})
    assert settings.max_message_size == size


def test_the_message_size_limit_defaults_to_rabbitmq_4s() -> None:
    assert load_settings({"CELERY_TASKS_ENV_FILE": ""}).max_message_size == 16 * 2**20


@pytest.mark.parametrize("text", ["16MB", "big", "-5", "1KiB", "1GiB", "16.5MiB"])
def test_a_bad_message_size_limit_names_the_variable(text: str) -> None:
    with pytest.raises(ConfigError, match="CELERY_TASKS_MAX_MESSAGE_SIZE"):
        load_settings({"CELERY_TASKS_MAX_MESSAGE_SIZE": text, "CELERY_TASKS_ENV_FILE": ""})


STALE = {"RABBITMQ_HOST": "not a host", "RABBITMQ_PORT": "abc",
         "RABBITMQ_TLS": "maybe"}


@pytest.mark.parametrize("name", sorted(STALE))
def test_the_variables_a_broker_url_replaces_are_not_read(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=name):  # without the URL, the value is wrong
        load_settings({name: STALE[name]})
    s = load_settings({name: STALE[name], "CELERY_BROKER_URL": "amqp://u:p@mq:5673/v"})
    assert (s.broker_url, s.broker_address, s.rabbitmq_user) == ("amqp://u:p@mq:5673/v",
                                                                 "mq:5673", "u")
    embedded = load_settings({name: STALE[name], "CELERY_BROKER_URL": "filesystem://",
                              "BROKER_FILESYSTEM_DIR": str(tmp_path)})
    assert embedded.uses_filesystem_broker


def test_password_never_in_repr_or_redacted_text(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = load_settings({"RABBITMQ_PASSWORD": "s3cr3t/pw"})
    assert "s3cr3t" not in repr(s)
    assert "s3cr3t" not in s.redact(f"failed for {s.broker_url} with s3cr3t/pw")


def test_url_overrides_win_over_derived_urls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    s = load_settings({"CELERY_BROKER_URL": "amqp://u:p@h:1/v",
                       "CELERY_RESULT_BACKEND": "redis://localhost:6379/0"})
    assert (s.broker_url, s.result_backend) == ("amqp://u:p@h:1/v", "redis://localhost:6379/0")


@pytest.mark.parametrize("url", ["redis://localhost", "not a url"])
def test_unsupported_broker_url_is_an_error(url: str) -> None:
    with pytest.raises(ConfigError, match="CELERY_BROKER_URL"):
        load_settings({"CELERY_BROKER_URL": url})


def test_filesystem_broker_needs_a_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="BROKER_FILESYSTEM_DIR"):
        load_settings({"CELERY_BROKER_URL": "filesystem://"})
    s = load_settings(
        {"CELERY_BROKER_URL": "filesystem://", "BROKER_FILESYSTEM_DIR": str(tmp_path)}
    )
    assert s.uses_filesystem_broker and str(tmp_path) in s.broker_address


def test_tls_switches_the_derived_url_to_amqps_and_verifies_the_server(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not checked here")
    s = load_settings({"RABBITMQ_TLS": "true", "RABBITMQ_PORT": "5671",
                       "BROKER_TLS_CA_FILE": str(ca)})
    assert s.broker_url.startswith("amqps://") and s.uses_tls
    options = s.tls_options()
    assert options["ca_certs"] == str(ca) and options["cert_reqs"] == 2  # CERT_REQUIRED


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"RABBITMQ_TLS": "maybe"}, "RABBITMQ_TLS"),
        ({"BROKER_TLS_CA_FILE": "/no/such/ca.pem"}, "BROKER_TLS_CA_FILE"),
        ({"BROKER_TLS_CERT_FILE": __file__}, "BROKER_TLS_KEY_FILE"),
    ],
)
def test_bad_tls_settings_name_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        load_settings(env)


def test_an_empty_env_file_variable_reads_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text("RABBITMQ_HOST=filehost\n")
    monkeypatch.chdir(tmp_path)
    assert load_settings({"CELERY_TASKS_ENV_FILE": ""}).rabbitmq_host == "localhost"
    assert load_settings({}).rabbitmq_host == "filehost"


@pytest.mark.parametrize("url", ["bogus://x", "not a url", "mysql://u@h/db"])
def test_a_result_backend_celery_does_not_know_is_an_error(url: str) -> None:
    with pytest.raises(ConfigError, match="CELERY_RESULT_BACKEND must be a URL such as"):
        load_settings({"CELERY_RESULT_BACKEND": url})


def test_a_result_backend_error_hides_the_password() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({"CELERY_RESULT_BACKEND": "bogus://user:s3cret@host/0"})
    assert "s3cret" not in str(info.value)


@pytest.mark.parametrize("url", ["rpc://", "redis://h:6379/0", "rediss://h:6380/0",
                                 "db+postgresql+psycopg://u@h/db", "db+sqlite:///r.db"])
def test_the_result_backends_celery_knows_are_accepted(url: str) -> None:
    assert load_settings({"CELERY_RESULT_BACKEND": url}).result_backend == url
    assert load_settings({"CELERY_RESULT_BACKEND": url.upper()[:5] + url[5:]}
                         ).result_backend.startswith(url.split("://")[0] + "://")


@pytest.mark.parametrize(("env", "expected"), [
    ({}, "classic"),  # one node: a classic queue is as durable as that node
    ({"RABBITMQ_HOST": "a,b,c"}, "quorum"),  # a cluster: replies must outlive a node
    ({"CELERY_BROKER_URL": "amqp://a//;amqp://b//"}, "quorum"),
    ({"RABBITMQ_HOST": "lb", "CELERY_TASKS_REPLY_QUEUE_TYPE": "quorum"}, "quorum"),
    ({"RABBITMQ_HOST": "a,b", "CELERY_TASKS_REPLY_QUEUE_TYPE": "Classic"}, "classic"),
])
def test_reply_queues_are_quorum_queues_on_a_cluster(env: dict[str, str], expected: str) -> None:
    assert load_settings({**env, "CELERY_TASKS_ENV_FILE": ""}).reply_queue_type == expected


def test_a_bad_reply_queue_type_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="CELERY_TASKS_REPLY_QUEUE_TYPE"):
        load_settings({"CELERY_TASKS_REPLY_QUEUE_TYPE": "stream", "CELERY_TASKS_ENV_FILE": ""})


def test_telemetry_is_off_unless_asked_for() -> None:
    s = load_settings({"CELERY_TASKS_ENV_FILE": ""})
    assert (s.traces_exporters, s.metrics_port, s.metrics_address) == ((), 0, "127.0.0.1")


def test_traces_follow_the_standard_variables_and_the_file(tmp_path: Path) -> None:
    spans = str(tmp_path / "spans.jsonl")
    s = load_settings({"CELERY_TASKS_ENV_FILE": "", "OTEL_TRACES_EXPORTER": "OTLP, console",
                       "CELERY_TASKS_TRACES_FILE": spans})
    assert (s.traces_exporters, s.traces_file) == (("otlp", "console", "file"), spans)
    assert load_settings({"CELERY_TASKS_ENV_FILE": "",
                          "OTEL_TRACES_EXPORTER": "none"}).traces_exporters == ()
    off = load_settings({"CELERY_TASKS_ENV_FILE": "", "OTEL_TRACES_EXPORTER": "otlp",
                         "CELERY_TASKS_TRACES_FILE": spans, "OTEL_SDK_DISABLED": "true"})
    assert off.traces_exporters == ()  # the SDK's own off switch wins


@pytest.mark.parametrize(("variable", "value", "says"), [
    ("OTEL_TRACES_EXPORTER", "zipkin", "OTEL_TRACES_EXPORTER may name otlp, console or none"),
    ("OTEL_SDK_DISABLED", "maybe", "OTEL_SDK_DISABLED must be true or false"),
    ("CELERY_TASKS_METRICS_PORT", "0", "CELERY_TASKS_METRICS_PORT"),
    ("CELERY_TASKS_METRICS_PORT", "http", "CELERY_TASKS_METRICS_PORT"),
])
def test_bad_telemetry_settings_name_the_variable(variable: str, value: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        load_settings({"CELERY_TASKS_ENV_FILE": "", variable: value})


def test_a_metrics_port_and_address() -> None:
    s = load_settings({"CELERY_TASKS_ENV_FILE": "", "CELERY_TASKS_METRICS_PORT": "9808",
                       "CELERY_TASKS_METRICS_ADDRESS": "0.0.0.0"})
    assert (s.metrics_port, s.metrics_address) == (9808, "0.0.0.0")


def test_an_sdk_variable_in_dotenv_is_refused_saying_where_it_goes(tmp_path: Path) -> None:
    (tmp_path / "env").write_text("OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:4318\n")
    with pytest.raises(ConfigError, match="reads it from the environment only"):
        load_settings({"CELERY_TASKS_ENV_FILE": str(tmp_path / "env")})
