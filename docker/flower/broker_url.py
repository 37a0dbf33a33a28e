"""Print the broker URL Flower uses, from the workers' settings (passwords URL-quoted;
RABBITMQ_HOST may list a cluster's nodes, comma-separated)."""

import os
from urllib.parse import quote

user, password = (quote(os.environ[k], safe="") for k in ("RABBITMQ_USER", "RABBITMQ_PASSWORD"))
port = os.environ.get("RABBITMQ_PORT", "5672")
hosts = [h.strip() for h in os.environ["RABBITMQ_HOST"].split(",")]
print(";".join(f"amqp://{user}:{password}@{h if ':' in h else f'{h}:{port}'}//" for h in hosts))
