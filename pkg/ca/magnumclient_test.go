package ca

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clusterkeys/clusterkeys/internal/need"
	"github.com/clusterkeys/clusterkeys/pkg/auth"
)

// pythonWithMagnumclient returns a Python interpreter that imports the
// real python-magnumclient, or skips (fails with CI=true) when there is none.
func pythonWithMagnumclient(t *testing.T) string {
	t.Helper()
	for _, py := range []string{"/usr/bin/python3", "python3"} {
		path, err := exec.LookPath(py)
		if err != nil {
			continue
		}
		if exec.Command(path, "-c", "import magnumclient.v1.client, keystoneauth1.token_endpoint").Run() == nil {
			return path
		}
	}
	need.Missing(t, "python-magnumclient not found: install it with `apt-get install -y python3-magnumclient` (Debian/Ubuntu)")
	return ""
}

// magnumScript does what "openstack coe ca sign|show|rotate" do, through
// python-magnumclient's keystoneauth session client, and prints the results
// as JSON.
const magnumScript = `
import json, os
from keystoneauth1 import session
from keystoneauth1.token_endpoint import Token
from magnumclient.v1 import client

url = os.environ["MAGNUM_URL"]
sess = session.Session(auth=Token(url, os.environ["MAGNUM_TOKEN"]))
c = client.Client(session=sess, endpoint_override=url, api_version="latest")
out = {}
cluster = c.clusters.get(os.environ["MAGNUM_CLUSTER"])
out["uuid"] = cluster.uuid
with open(os.environ["MAGNUM_CSR"]) as f:
    out["signed"] = c.certificates.create(cluster_uuid=cluster.uuid, csr=f.read()).pem
out["ca_before"] = c.certificates.get(cluster.uuid).pem
c.certificates.rotate_ca(cluster_uuid=cluster.uuid)
out["ca_after"] = c.certificates.get(cluster.uuid).pem
for name, call in [("missing", lambda: c.certificates.get("no-such-cluster")),
                   ("refused", lambda: c.certificates.create(cluster_uuid=cluster.uuid, csr="not a csr"))]:
    try:
        call()
        out[name] = "no error"
    except Exception as e:
        out[name] = "%s: %s | %s" % (type(e).__name__, e, getattr(e, "details", ""))
print(json.dumps(out))
`

func TestRealMagnumclientSignsShowsAndRotates(t *testing.T) {
	py := pythonWithMagnumclient(t)
	f := newFixture(t, Options{})
	const uuid = "5d12f6fd-a196-4bf0-ae4c-1f639a523a52"
	f.mustCreate(t, uuid, CreateRequest{})

	const token = "test-token-member"
	srv := httptest.NewServer(testHandler(MagnumRoutes(f.a), func(r *http.Request) *auth.Principal {
		if r.Header.Get("X-Auth-Token") == token {
			return &member
		}
		return nil
	}))
	t.Cleanup(srv.Close)

	dir := t.TempDir()
	script, csrFile := filepath.Join(dir, "magnum.py"), filepath.Join(dir, "client.csr")
	if err := os.WriteFile(script, []byte(magnumScript), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(csrFile, []byte(makeCSR(t, csrOptions{cn: "alice", orgs: []string{"dev"}})), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(py, script)
	cmd.Env = append(os.Environ(), "MAGNUM_URL="+srv.URL+"/v1", "MAGNUM_TOKEN="+token,
		"MAGNUM_CLUSTER="+uuid, "MAGNUM_CSR="+csrFile)
	stdout, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("python-magnumclient failed: %v\n%s", err, stderr)
	}
	var out map[string]string
	if err := json.Unmarshal(stdout, &out); err != nil {
		t.Fatalf("script output %q: %v", stdout, err)
	}
	now := f.clock.Now()
	if out["uuid"] != uuid {
		t.Errorf("clusters.get uuid = %q", out["uuid"])
	}
	if !verifies(t, out["signed"], out["ca_before"], now) {
		t.Error("the signed certificate does not verify against the CA the client showed")
	}
	if out["ca_after"] == out["ca_before"] || verifies(t, out["signed"], out["ca_after"], now) {
		t.Error("after rotate_ca the old certificate still verifies against the shown CA")
	}
	if !strings.HasPrefix(out["missing"], "NotFound") || !strings.Contains(out["missing"], "ca_not_found") {
		t.Errorf("unknown cluster: %s", out["missing"])
	}
	if !strings.HasPrefix(out["refused"], "BadRequest") || !strings.Contains(out["refused"], "invalid_csr") {
		t.Errorf("bad CSR: %s", out["refused"])
	}
}
