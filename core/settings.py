"""Read, validate and hold every setting once: the environment first, then a `.env` file.

This is the only module that reads the environment. A malformed value is a `ConfigError`
that names the variable; a key in `.env` that this project does not know is one too, so a
typo never silently falls back to a default.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from celery.app.backends import BACKEND_ALIASES
from dotenv import dotenv_values
from kombu.utils.url import maybe_sanitize_url, url_to_parts

from .errors import ConfigError

#: Every setting this project reads, with its default ('' means unset).
DEFAULTS: dict[str, str] = {
    "RABBITMQ_HOST": "localhost",
    "RABBITMQ_PORT": "5672",
    "RABBITMQ_USER": "guest",
    "RABBITMQ_PASSWORD": "guest",
    "RABBITMQ_VHOST": "/",
    "CELERY_BROKER_URL": "",
    "CELERY_RESULT_BACKEND": "",
    "BROKER_CONNECT_TIMEOUT": "10",
    "BROKER_FILESYSTEM_DIR": "",
    "CELERY_TASKS_QUEUE_TYPE": "quorum",
    "CELERY_TASKS_DELIVERY_LIMIT": "5",
    "CELERY_TASKS_MAX_MESSAGE_SIZE": "16MiB",
    "CELERY_TASKS_REPLY_QUEUE_TYPE": "auto",
    "RABBITMQ_TLS": "false",
    "BROKER_TLS_CA_FILE": "",
    "BROKER_TLS_CERT_FILE": "",
    "BROKER_TLS_KEY_FILE": "",
    # Telemetry (core/tracing.py, worker/metrics.py): off unless set.
    "OTEL_TRACES_EXPORTER": "",
    "OTEL_SDK_DISABLED": "false",
    "CELERY_TASKS_TRACES_FILE": "",
    "CELERY_TASKS_METRICS_PORT": "",
    "CELERY_TASKS_METRICS_ADDRESS": "127.0.0.1",
}
#: Span exporters OTEL_TRACES_EXPORTER may name (a comma-separated list); "none" is off.
TRACES_EXPORTERS = ("otlp", "console")
#: The article's name for the password, accepted as an alias of RABBITMQ_PASSWORD.
ALIASES = {"RABBITMQ_PWD": "RABBITMQ_PASSWORD"}
#: Keys a `.env` may hold for other tools (docker-compose) without being an error.
FOREIGN_KEYS = frozenset(
    {"PYTHON_IMAGE", "RABBITMQ_IMAGE", "COMPOSE_PROJECT_NAME", "RABBITMQ_MANAGEMENT_PORT",
     "FLOWER_PORT", "PROMETHEUS_PORT", "PROMETHEUS_IMAGE", "RABBITMQ_ERLANG_COOKIE",
     *(f"RABBITMQ_{role}_{key}" for role in ("ADMIN", "PRODUCER", "WORKER")
       for key in ("USER", "PASSWORD"))}
)
ENV_FILE_VARIABLE = "CELERY_TASKS_ENV_FILE"


@dataclass(frozen=True)
class Settings:
    """Validated settings; `broker_url` and `result_backend` are ready for Celery."""

    rabbitmq_host: str
    rabbitmq_port: int
    rabbitmq_user: str
    rabbitmq_password: str
    rabbitmq_vhost: str
    broker_url: str
    result_backend: str
    broker_connect_timeout: float
    broker_filesystem_dir: str
    queue_type: str = "quorum"
    delivery_limit: int = 5
    #: Bytes RabbitMQ takes in one message (its max_message_size): 16 MiB on 4.x.
    max_message_size: int = 16 * 1024 * 1024
    tls_ca_file: str = ""
    tls_cert_file: str = ""
    tls_key_file: str = ""
    #: The broker URL came from CELERY_BROKER_URL, not from the RABBITMQ_* variables.
    broker_url_given: bool = False
    #: Every node the clients know, as host:port (a cluster: several, tried in turn).
    broker_nodes: tuple[str, ...] = ()
    #: The type of the queues results come back to: quorum where they must survive a node.
    reply_queue_type: str = "classic"
    #: Where spans go: OTEL_TRACES_EXPORTER's exporters, and "file" for
    #: CELERY_TASKS_TRACES_FILE; empty: tracing is off (and costs nothing).
    traces_exporters: tuple[str, ...] = ()
    traces_file: str = ""
    #: The port a worker serves Prometheus metrics on (0: none), and the address it binds.
    metrics_port: int = 0
    metrics_address: str = "127.0.0.1"

    @property
    def uses_tls(self) -> bool:
        return self.broker_url.startswith("amqps:")

    def tls_options(self) -> dict[str, Any]:
        """py-amqp's TLS options: the server's certificate is always verified."""
        options: dict[str, Any] = {"cert_reqs": ssl.CERT_REQUIRED,
                                   "server_hostname": self.rabbitmq_host}
        if self.tls_ca_file:
            options["ca_certs"] = self.tls_ca_file
        else:
            options["ca_certs"] = ssl.get_default_verify_paths().cafile
        if self.tls_cert_file:
            options |= {"certfile": self.tls_cert_file, "keyfile": self.tls_key_file}
        return options

    def __repr__(self) -> str:  # never print the password
        return (
            f"Settings(host={self.rabbitmq_host!r}, port={self.rabbitmq_port}, "
            f"user={self.rabbitmq_user!r}, vhost={self.rabbitmq_vhost!r})"
        )

    @property
    def uses_filesystem_broker(self) -> bool:
        return self.broker_url.startswith("filesystem:")

    @property
    def broker_address(self) -> str:
        """Where the broker is, for messages: host:port, or the embedded broker's folder."""
        if self.uses_filesystem_broker:
            return f"embedded broker in {self.broker_filesystem_dir}"
        return ", ".join(self.broker_nodes) or f"{self.rabbitmq_host}:{self.rabbitmq_port}"

    def redact(self, text: str) -> str:
        """Remove the password (raw and URL-quoted) from a text meant for a user."""
        for secret in {self.rabbitmq_password, quote(self.rabbitmq_password, safe="")}:
            if secret:
                text = text.replace(secret, "***")
        return text


#: The result backends Celery knows by URL scheme (`db+postgresql://...` is `db`).
RESULT_BACKEND_SCHEMES = frozenset(BACKEND_ALIASES)


def _read_env_file(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    try:
        values = {key: value or "" for key, value in dotenv_values(path).items()}
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    known = DEFAULTS.keys() | ALIASES.keys() | FOREIGN_KEYS | {ENV_FILE_VARIABLE}
    for key in values:
        if key.startswith("OTEL_") and key not in known:
            raise ConfigError(f"{key} in {path}: the OpenTelemetry SDK reads it from the "
                              "environment only; set it there")
        if key not in known:
            raise ConfigError(
                f"unknown setting {key} in {path}: known settings are {', '.join(DEFAULTS)}"
            )
    return values


def _resolve_aliases(values: dict[str, str]) -> dict[str, str]:
    """RABBITMQ_PWD (the article's name) as RABBITMQ_PASSWORD, unless both are given."""
    resolved = dict(values)
    for alias, name in ALIASES.items():
        if alias in resolved:
            resolved.setdefault(name, resolved[alias])
    return resolved


Broker = tuple[str, int, str, str, str, tuple[str, ...]]


def _broker_parts(url: str) -> Broker:
    """Host, port, user, password and vhost an amqp(s):// URL names, parsed as kombu parses
    it, with kombu's defaults (guest, guest, /) for what it leaves out, and every node of a
    failover list (`a;b`) as host:port; the rest is the first URL's."""
    nodes = []
    for index, one in enumerate(url.split(";")):
        try:
            parts = url_to_parts(one.strip())
        except ValueError as exc:
            raise ConfigError(f"CELERY_BROKER_URL is malformed: {exc}") from None
        if not parts.hostname:
            raise ConfigError("CELERY_BROKER_URL must name a host, such as "
                              "amqp://user@host:5672/")
        port = parts.port or (5671 if parts.scheme == "amqps" else 5672)
        nodes.append(f"{parts.hostname}:{port}")
        if index == 0:
            first = (parts.hostname, port,
                     "guest" if parts.username is None else parts.username,
                     "guest" if parts.password is None else parts.password, parts.path or "/")
    return (*first, tuple(nodes))


def _derived_broker(raw: Mapping[str, str]) -> tuple[Broker, str]:
    """Host, port, user, password and vhost from the RABBITMQ_* variables, checked, with
    every node (RABBITMQ_HOST may list a cluster's, comma-separated, each with its own
    :port or RABBITMQ_PORT), and the broker URL they make: one amqp:// URL per node, as a
    failover list (amqps:// with RABBITMQ_TLS)."""
    port = int(_number("RABBITMQ_PORT", raw["RABBITMQ_PORT"], low=1, high=65535, integer=True))
    nodes = [_node(text.strip(), port) for text in raw["RABBITMQ_HOST"].split(",")]
    user, password, vhost = raw["RABBITMQ_USER"], raw["RABBITMQ_PASSWORD"], raw["RABBITMQ_VHOST"]
    if not user:
        raise ConfigError("RABBITMQ_USER must not be empty")
    tls = _flag("RABBITMQ_TLS", raw["RABBITMQ_TLS"])
    if tls and len(nodes) > 1:
        raise ConfigError("RABBITMQ_TLS takes one RABBITMQ_HOST: the server certificate is "
                          "checked against one name (give the cluster one name, such as a "
                          "load balancer's)")
    scheme = "amqps" if tls else "amqp"
    # Quote every part: a password like 'p@ss:w/rd%' must survive the URL intact.
    url = ";".join(f"{scheme}://{quote(user, safe='')}:{quote(password, safe='')}@{host}:"
                   f"{node_port}/{quote(vhost, safe='')}" for host, node_port in nodes)
    host, port = nodes[0]
    return (host, port, user, password, vhost, tuple(f"{h}:{p}" for h, p in nodes)), url


def _node(text: str, default_port: int) -> tuple[str, int]:
    """`host` or `host:port` of one RABBITMQ_HOST entry, checked."""
    host, colon, port_text = text.partition(":")
    if not host or any(c in host for c in "/@ ") or (colon and not port_text):
        raise ConfigError(f"RABBITMQ_HOST must be a host name or address, or several "
                          f"separated by commas (host or host:port each), got {text!r}")
    if not colon:
        return host, default_port
    return host, int(_number("RABBITMQ_HOST", port_text, low=1, high=65535, integer=True))


def _number(name: str, text: str, *, low: float, high: float, integer: bool) -> float:
    try:
        value = int(text) if integer else float(text)
    except ValueError:
        kind = "a whole number" if integer else "a number"
        raise ConfigError(f"{name} must be {kind}, got {text!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low:g} and {high:g}, got {text!r}")
    return value


_UNITS = {"": 1, "b": 1, "kib": 1024, "mib": 1024**2, "gib": 1024**3}
#: RabbitMQ's own bounds for max_message_size: it refuses more than 512 MiB.
_MESSAGE_SIZE_BOUNDS = (1024**2, 512 * 1024**2)


def _size(name: str, text: str) -> int:
    """A byte count: `16777216`, `16MiB`, `512 KiB`, within RabbitMQ's bounds."""
    number = text.strip().lower().rstrip("bikmg ")
    unit = text.strip().lower()[len(number):].replace(" ", "")
    low, high = _MESSAGE_SIZE_BOUNDS
    if unit not in _UNITS or not number.isdigit():
        raise ConfigError(f"{name} must be a size such as 16MiB or 16777216 (bytes), got {text!r}")
    value = int(number) * _UNITS[unit]
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between 1MiB and 512MiB (RabbitMQ's max_message_size "
                          f"bounds), got {text!r}")
    return value


def _flag(name: str, text: str) -> bool:
    value = text.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise ConfigError(f"{name} must be true or false, got {text!r}")


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build the settings from `environ` (default: the process environment) and `.env`.

    The environment wins over the file. The file is `.env` in the working directory, or
    the path in CELERY_TASKS_ENV_FILE.
    """
    env = dict(os.environ if environ is None else environ)
    named = env.get(ENV_FILE_VARIABLE)
    if named and not Path(named).is_file():
        raise ConfigError(f"{ENV_FILE_VARIABLE} names {named}, which is not a file")
    # Unset: .env in the working directory; set but empty: no file at all.
    from_file = {} if named == "" else _read_env_file(Path(named or ".env"))
    # An empty variable counts as unset (docker-compose passes unset ones as empty). Each
    # source resolves its own aliases first, so the environment's RABBITMQ_PWD still wins
    # over the file's RABBITMQ_PASSWORD.
    merged = {**_resolve_aliases(from_file),
              **_resolve_aliases({k: v for k, v in env.items() if v != ""})}
    raw = {name: merged.get(name, default) for name, default in DEFAULTS.items()}

    timeout = _number(
        "BROKER_CONNECT_TIMEOUT", raw["BROKER_CONNECT_TIMEOUT"], low=0.1, high=3600, integer=False
    )
    tls_files = {name: raw[name] for name in
                 ("BROKER_TLS_CA_FILE", "BROKER_TLS_CERT_FILE", "BROKER_TLS_KEY_FILE")}
    for name, path in tls_files.items():
        if path and not Path(path).is_file():
            raise ConfigError(f"{name} names {path}, which is not a readable file")
    if bool(tls_files["BROKER_TLS_CERT_FILE"]) != bool(tls_files["BROKER_TLS_KEY_FILE"]):
        raise ConfigError("BROKER_TLS_CERT_FILE and BROKER_TLS_KEY_FILE go together: set both")
    broker_url = raw["CELERY_BROKER_URL"]
    scheme = broker_url.split("://", 1)[0]
    if broker_url and ("://" not in broker_url
                       or scheme not in {"amqp", "amqps", "pyamqp", "filesystem"}):
        raise ConfigError(
            "CELERY_BROKER_URL must be an amqp://, amqps:// or filesystem:// URL, "
            f"got scheme {scheme!r}"
        )
    if not broker_url:
        (host, port, user, password, vhost, nodes), broker_url = _derived_broker(raw)
    elif scheme != "filesystem":
        # The URL wins: messages, redaction and TLS host checks use what it names, and the
        # RABBITMQ_* variables it replaces are not read (a stale one is no error).
        host, port, user, password, vhost, nodes = _broker_parts(broker_url)
    else:  # the embedded broker: no host, no credentials
        host, port, user, password, vhost, nodes = "localhost", 5672, "guest", "", "/", ()
    fs_dir = raw["BROKER_FILESYSTEM_DIR"]
    if scheme == "filesystem" and not fs_dir:
        raise ConfigError("BROKER_FILESYSTEM_DIR must name a folder when the broker is filesystem://")
    queue_type = raw["CELERY_TASKS_QUEUE_TYPE"].strip().lower()
    if queue_type not in {"quorum", "classic"}:
        raise ConfigError(f"CELERY_TASKS_QUEUE_TYPE must be quorum or classic, got {queue_type!r}")
    delivery_limit = int(_number("CELERY_TASKS_DELIVERY_LIMIT", raw["CELERY_TASKS_DELIVERY_LIMIT"],
                                 low=1, high=1000, integer=True))
    reply_queue_type = raw["CELERY_TASKS_REPLY_QUEUE_TYPE"].strip().lower()
    if reply_queue_type not in {"auto", "quorum", "classic"}:
        raise ConfigError("CELERY_TASKS_REPLY_QUEUE_TYPE must be auto, quorum or classic, got "
                          f"{reply_queue_type!r}")
    if reply_queue_type == "auto":  # a classic queue lives on one node: lost with it
        reply_queue_type = "quorum" if len(nodes) > 1 else "classic"
    backend = raw["CELERY_RESULT_BACKEND"] or "rpc://"
    scheme, separator, rest = backend.partition("://")
    scheme = scheme.lower()
    backend = scheme + separator + rest  # RPC:// is rpc://, for every check after this
    if "://" not in backend or scheme.split("+")[0] not in RESULT_BACKEND_SCHEMES:
        raise ConfigError(
            "CELERY_RESULT_BACKEND must be a URL such as rpc://, redis://host:6379/0 or "
            f"db+postgresql+psycopg://user@host/db, got {maybe_sanitize_url(backend)!r}")
    exporters, traces_file = _traces(raw)
    metrics_port = raw["CELERY_TASKS_METRICS_PORT"].strip()
    return Settings(
        rabbitmq_host=host,
        rabbitmq_port=port,
        rabbitmq_user=user,
        rabbitmq_password=password,
        rabbitmq_vhost=vhost,
        broker_url=broker_url,
        result_backend=backend,
        broker_connect_timeout=timeout,
        broker_filesystem_dir=fs_dir,
        queue_type=queue_type,
        delivery_limit=delivery_limit,
        max_message_size=_size("CELERY_TASKS_MAX_MESSAGE_SIZE",
                               raw["CELERY_TASKS_MAX_MESSAGE_SIZE"]),
        tls_ca_file=tls_files["BROKER_TLS_CA_FILE"],
        tls_cert_file=tls_files["BROKER_TLS_CERT_FILE"],
        tls_key_file=tls_files["BROKER_TLS_KEY_FILE"],
        broker_url_given=bool(raw["CELERY_BROKER_URL"]),
        broker_nodes=nodes,
        reply_queue_type=reply_queue_type,
        traces_exporters=exporters,
        traces_file=traces_file,
        metrics_port=int(_number("CELERY_TASKS_METRICS_PORT", metrics_port, low=1, high=65535,
                                 integer=True)) if metrics_port else 0,
        metrics_address=raw["CELERY_TASKS_METRICS_ADDRESS"].strip() or "127.0.0.1",
    )


def _traces(raw: Mapping[str, str]) -> tuple[tuple[str, ...], str]:
    """The span exporters the OpenTelemetry variables ask for, and the traces file."""
    if _flag("OTEL_SDK_DISABLED", raw["OTEL_SDK_DISABLED"]):
        return (), ""
    names = [n.strip().lower() for n in raw["OTEL_TRACES_EXPORTER"].split(",") if n.strip()]
    unknown = [n for n in names if n not in (*TRACES_EXPORTERS, "none")]
    if unknown:
        raise ConfigError(f"OTEL_TRACES_EXPORTER may name {', '.join(TRACES_EXPORTERS)} or none, "
                          f"got {unknown[0]!r}")
    exporters = [n for n in names if n != "none"]
    traces_file = raw["CELERY_TASKS_TRACES_FILE"].strip()
    if traces_file:
        if not Path(traces_file).parent.is_dir():
            raise ConfigError(f"CELERY_TASKS_TRACES_FILE names {traces_file}, whose folder "
                              "does not exist")
        exporters.append("file")
    return tuple(dict.fromkeys(exporters)), traces_file
