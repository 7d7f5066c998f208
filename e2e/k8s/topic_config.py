"""Prints a topic config's value as the cluster describes it, for the
Kubernetes tour.

    topic_config.py BOOTSTRAP TOPIC KEY
"""

import sys

from confluent_kafka.admin import AdminClient, ConfigResource


def main():
    bootstrap, topic, key = sys.argv[1:4]
    admin = AdminClient({"bootstrap.servers": bootstrap})
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    configs = admin.describe_configs([resource], request_timeout=15)[resource].result(timeout=20)
    entry = configs.get(key)
    if entry is None:
        sys.exit(f"{topic} has no config {key}")
    print(entry.value)


if __name__ == "__main__":
    main()
