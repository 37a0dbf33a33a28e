"""Celery settings shared by every producer and worker, safe by default.

Delivery is at-least-once: publisher confirms, persistent messages on durable queues,
acknowledgement after the task ran (a worker that dies mid-task leaves its message to be
redelivered), and a prefetch of one per pool slot by default (`python -m consumer` sets each
implementation's own: slow tasks one, tiny ones more) so a busy worker holds little hostage.
JSON is the only content accepted: a pickle message is refused, never executed.
"""

from __future__ import annotations

import os
import random
import socket
from typing import Any

from .rabbitmq_config import SETTINGS

# A cluster's nodes (a failover list, `amqp://a;amqp://b`): each process starts at a random
# one and fails over to the next in turn, so that many workers' connections spread evenly.
_nodes = SETTINGS.broker_url.split(";")
_start = random.randrange(len(_nodes))  # noqa: S311  # spreading load, not a secret
broker_url: str = ";".join(_nodes[_start:] + _nodes[:_start])
result_backend: str = SETTINGS.result_backend

# JSON only: pickle would let anyone who can publish run code on the workers.
task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]
result_accept_content = ["json"]

# At-least-once delivery: the message is acknowledged only after the task ran; a worker
# that dies mid-task leaves it to be redelivered. A task whose pool process dies is retried
# (up to its max_retries), then fails. A task that fails, times out or exhausts its retries
# is rejected into its dead-letter queue, after its error went to the caller.
task_acks_late = True
task_reject_on_worker_lost = True
task_retry_on_worker_lost = True
task_acks_on_failure = False
task_acks_on_timeout = False
worker_prefetch_multiplier = 1  # the consumer passes each implementation's own
# Undecodable, refused (pickle), unknown or invalid messages go to the dead-letter queue.
worker_consumer = "celery_tasks.worker.consumer:ContractConsumer"
# Quorum queues (see topology.py); the worker then uses per-consumer prefetch, which
# quorum queues require, and native delayed delivery for retries with a countdown.
task_default_queue_type: str = SETTINGS.queue_type
worker_detect_quorum_queues = True
broker_native_delayed_delivery_queue_type: str = SETTINGS.queue_type
celery_tasks_delivery_limit: int = SETTINGS.delivery_limit
# Results come back to durable reply queues (publisher/connection.py, core/results.py):
# quorum queues on a cluster (replicated: a result outlives the node its producer used).
celery_tasks_reply_queue_type: str = SETTINGS.reply_queue_type
# The broker's message size limit: calls and results over it are refused before sending.
celery_tasks_max_message_size: int = SETTINGS.max_message_size
celery_tasks_dead_letter = True
task_publish_retry = True
task_publish_retry_policy = {"max_retries": 3, "interval_start": 0.2, "interval_step": 0.5}
# Each connection names its host and process, so an operator can tell them apart
# (`rabbitmqctl list_connections client_properties`, the management UI).
CONNECTION_NAME = f"celery_tasks {socket.gethostname()} pid {os.getpid()}"
broker_transport_options: dict[str, Any] = {
    "confirm_publish": True, "client_properties": {"connection_name": CONNECTION_NAME}}
if SETTINGS.uses_filesystem_broker:
    # kombu's virtual transports know neither queue types nor dead-lettering.
    task_default_queue_type = "classic"
    celery_tasks_dead_letter = False
    broker_transport_options = {
        "data_folder_in": SETTINGS.broker_filesystem_dir,
        "data_folder_out": SETTINGS.broker_filesystem_dir,
        "control_folder": f"{SETTINGS.broker_filesystem_dir}/control",
        "polling_interval": 0.01,
    }

# TLS (amqps://): the broker's certificate is verified against BROKER_TLS_CA_FILE (or the
# system's CAs); BROKER_TLS_CERT_FILE and BROKER_TLS_KEY_FILE add a client certificate.
broker_use_ssl: dict[str, Any] | bool = SETTINGS.tls_options() if SETTINGS.uses_tls else False

# Connections: a short socket timeout, bounded retries at start (the CLIs add a deadline),
# and a running worker that loses the broker keeps reconnecting rather than dying.
broker_connection_timeout = 4.0
broker_connection_retry_on_startup = True
broker_connection_max_retries = None
# A node that dies without closing its connections (a host lost, a network cut) is noticed
# after two missed heartbeats: 20 s. Clients then fail over to the next node.
broker_heartbeat = 10
# A channel error while a consumer (re)starts, such as a queue still locked by a dead
# connection, restarts the consumer rather than end the worker.
broker_channel_error_retry = True
worker_cancel_long_running_tasks_on_connection_loss = True

# Results and time.
result_expires = 3600
# rpc:// results are persistent messages: in the batch path's durable reply queue they
# survive a broker restart.
result_persistent = True
# A result carries the value alone, not the task's arguments again: with them, a call
# near the message size limit would make a result over it.
result_extended = False
task_track_started = False
enable_utc = True
timezone = "UTC"
worker_hijack_root_logger = True
worker_redirect_stdouts = True
worker_send_task_events = False
