"""Broker connection settings, under the article's names.

Values come from the environment, then `.env` (see `core/settings.py`); a malformed value
raises `ConfigError` naming the variable when this module is imported.
"""

from __future__ import annotations

from .core.settings import Settings, load_settings

SETTINGS: Settings = load_settings()

RABBITMQ_HOST: str = SETTINGS.rabbitmq_host
RABBITMQ_PORT: int = SETTINGS.rabbitmq_port
RABBITMQ_USER: str = SETTINGS.rabbitmq_user
RABBITMQ_PWD: str = SETTINGS.rabbitmq_password
RABBITMQ_VHOST: str = SETTINGS.rabbitmq_vhost
