#!/usr/bin/env bash
# Create .env for docker-compose from .env.example, with a fresh random RabbitMQ password.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
[ ! -e .env ] || { echo ".env exists; leaving it as it is"; exit 0; }
password=$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')
sed "s|^RABBITMQ_PASSWORD=.*|RABBITMQ_PASSWORD=$password|" .env.example > .env
chmod 600 .env
echo "created .env with a random RABBITMQ_PASSWORD (see .env.example)"
