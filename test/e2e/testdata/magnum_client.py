"""Drives clusterkeys' Magnum-compatible routes with python-magnumclient.

Run with Debian's python3 (python3-magnumclient):
    magnum_client.py URL TOKEN CLUSTER CSR_FILE
Prints one JSON object with what the client saw; exits non-zero on failure.
The token comes from the CLUSTERKEYS_TOKEN variable when TOKEN is "-",
so that it does not show in the process list.
"""
import json
import os
import sys

from magnumclient import exceptions
from magnumclient.v1 import client


def main():
    url, token, cluster, csr_file = sys.argv[1:5]
    if token == "-":
        token = os.environ["CLUSTERKEYS_TOKEN"]
    with open(csr_file) as f:
        csr = f.read()
    c = client.Client(auth_token=token, magnum_url=url)
    out = {}

    ca = c.certificates.get(cluster_uuid=cluster)
    out["ca_pem"] = ca.pem
    out["ca_cluster_uuid"] = ca.cluster_uuid

    cert = c.certificates.create(cluster_uuid=cluster, csr=csr)
    out["cert_pem"] = cert.pem
    out["cert_csr_echoed"] = cert.csr == csr

    c.certificates.rotate_ca(cluster_uuid=cluster)
    out["rotated_ca_pem"] = c.certificates.get(cluster_uuid=cluster).pem

    try:
        c.certificates.get(cluster_uuid="no-such-cluster")
        out["missing"] = "no error"
    except exceptions.NotFound as e:
        out["missing"] = "NotFound"
        out["missing_message"] = str(e)
    except Exception as e:  # any other class is a compatibility bug
        out["missing"] = type(e).__name__

    try:
        c.certificates.create(cluster_uuid=cluster, csr="not a csr")
        out["bad_csr"] = "no error"
    except exceptions.BadRequest as e:
        out["bad_csr"] = "BadRequest"
        out["bad_csr_message"] = str(e)
    except Exception as e:
        out["bad_csr"] = type(e).__name__

    print(json.dumps(out))


if __name__ == "__main__":
    main()
