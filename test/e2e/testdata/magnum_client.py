"""Drives clusterkeys' Magnum-compatible routes with python-magnumclient.

Run with Debian's python3 (python3-magnumclient):
    magnum_client.py URL TOKEN CLUSTER CSR_FILE
TOKEN "keystone" logs in to Keystone with OS_AUTH_URL, OS_USERNAME,
OS_PASSWORD and OS_PROJECT_NAME instead.
Prints one JSON object with what the client saw; exits non-zero on failure.
The token comes from the CLUSTERKEYS_TOKEN variable when TOKEN is "-",
so that it does not show in the process list.
"""
import json
import os
import sys

from keystoneauth1 import session
from keystoneauth1.token_endpoint import Token
from magnumclient.v1 import client


def main():
    url, token, cluster, csr_file = sys.argv[1:5]
    if token == "-":
        token = os.environ["CLUSTERKEYS_TOKEN"]
    with open(csr_file) as f:
        csr = f.read()
    # The keystoneauth session client is what `openstack coe` uses; the
    # legacy auth_token + magnum_url client is driven too (below).
    if token == "keystone":
        # A password session against Keystone, as `openstack coe` has:
        # the token clusterkeys sees is one Keystone issued.
        from keystoneauth1.identity import v3
        sess = session.Session(auth=v3.Password(
            auth_url=os.environ["OS_AUTH_URL"], username=os.environ["OS_USERNAME"],
            password=os.environ["OS_PASSWORD"], project_name=os.environ["OS_PROJECT_NAME"],
            user_domain_name="Default", project_domain_name="Default"))
    else:
        sess = session.Session(auth=Token(url, token))
    c = client.Client(session=sess, endpoint_override=url, api_version="latest")
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
    except Exception as e:  # the client's NotFound (keystoneauth's, with a session)
        out["missing"] = type(e).__name__
        out["missing_message"] = str(e)

    try:
        c.certificates.create(cluster_uuid=cluster, csr="not a csr")
        out["bad_csr"] = "no error"
    except Exception as e:
        out["bad_csr"] = type(e).__name__
        out["bad_csr_message"] = str(e)

    if token != "keystone":
        legacy(url, token, cluster, csr, c, out)
    print(json.dumps(out))


def legacy(url, token, cluster, csr, session_client, out):
    """The form Magnum's docs show: Client(auth_token=..., magnum_url=...).

    Its rotate_ca cannot succeed against any server: with no request body
    it goes through raw_request, whose body is an io.StringIO, and
    Resource() then calls .items() on it (AttributeError). Magnum answers
    the same 202 {"uuid"}. So the test checks that the server rotated the
    CA and that the client's failure is exactly that bug.
    """
    lc = client.Client(auth_token=token, magnum_url=url)
    out["legacy_ca_pem"] = lc.certificates.get(cluster_uuid=cluster).pem
    cert = lc.certificates.create(cluster_uuid=cluster, csr=csr)
    out["legacy_cert_pem"] = cert.pem
    try:
        lc.certificates.rotate_ca(cluster_uuid=cluster)
        out["legacy_rotate"] = "ok"
    except AttributeError as e:
        out["legacy_rotate"] = "client bug: " + str(e)
    out["legacy_rotated_ca_pem"] = session_client.certificates.get(cluster_uuid=cluster).pem
    try:
        lc.certificates.get(cluster_uuid="no-such-cluster")
        out["legacy_missing"] = "no error"
    except Exception as e:
        out["legacy_missing"] = type(e).__name__


if __name__ == "__main__":
    main()
