"""Prints the ACL bindings of a principal, one per line, as the cluster
describes them to a client with a certificate, for the Kubernetes tour.

    acls_of.py BOOTSTRAP CA CERT KEY PRINCIPAL
"""

import sys

from confluent_kafka.admin import (AclBindingFilter, AclOperation, AclPermissionType, AdminClient,
                                   ResourcePatternType, ResourceType)


def main():
    bootstrap, ca, cert, key, principal = sys.argv[1:6]
    admin = AdminClient({
        "bootstrap.servers": bootstrap,
        "security.protocol": "ssl",
        "ssl.ca.location": ca,
        "ssl.certificate.location": cert,
        "ssl.key.location": key,
    })
    filt = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, principal, None,
                            AclOperation.ANY, AclPermissionType.ANY)
    for b in admin.describe_acls(filt, request_timeout=15).result(timeout=20):
        print(f"{b.restype.name} {b.name} {b.resource_pattern_type.name} {b.operation.name} {b.permission_type.name}")


if __name__ == "__main__":
    main()
