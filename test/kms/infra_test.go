package kms

import (
	"bytes"
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	apiserverv1 "k8s.io/apiserver/pkg/apis/apiserver/v1"
	"k8s.io/apiserver/pkg/server/options/encryptionconfig"
	"k8s.io/apiserver/pkg/storage/value"
	"sigs.k8s.io/yaml"
)

const infraDir = "../../infra/kmsshim"

func readInfra(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(infraDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// argValue returns the value of --name=VALUE in args.
func argValue(args []string, name string) (string, bool) {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v, true
		}
	}
	return "", false
}

func TestInfraManifests(t *testing.T) {
	var enc apiserverv1.EncryptionConfiguration
	if err := yaml.UnmarshalStrict(readInfra(t, "encryption-config.yaml"), &enc); err != nil {
		t.Fatalf("encryption-config.yaml does not decode strictly into EncryptionConfiguration: %v", err)
	}
	var pod corev1.Pod
	if err := yaml.UnmarshalStrict(readInfra(t, "kmsshim-pod.yaml"), &pod); err != nil {
		t.Fatalf("kmsshim-pod.yaml does not decode strictly into a Pod: %v", err)
	}

	t.Run("the encryption config sends secrets to KMS v2 first, identity last", func(t *testing.T) {
		if enc.APIVersion != "apiserver.config.k8s.io/v1" || enc.Kind != "EncryptionConfiguration" || len(enc.Resources) != 1 {
			t.Fatalf("unexpected header or resources: %+v", enc)
		}
		r := enc.Resources[0]
		if len(r.Resources) != 1 || r.Resources[0] != "secrets" || len(r.Providers) != 2 {
			t.Fatalf("resources = %v, providers = %d", r.Resources, len(r.Providers))
		}
		kms := r.Providers[0].KMS
		if kms == nil || kms.APIVersion != "v2" || kms.Name != providerName || kms.Timeout == nil || kms.Timeout.Duration > 10*time.Second {
			t.Fatalf("first provider = %+v, want kms v2 named %q with a short timeout", r.Providers[0], providerName)
		}
		if r.Providers[1].Identity == nil {
			t.Fatal("last provider is not identity")
		}
	})

	t.Run("the static Pod serves the socket the encryption config names", func(t *testing.T) {
		if pod.Namespace != "kube-system" || len(pod.Spec.Containers) != 1 {
			t.Fatalf("pod %s/%s with %d containers", pod.Namespace, pod.Name, len(pod.Spec.Containers))
		}
		c := pod.Spec.Containers[0]
		listen, ok := argValue(c.Args, "listen")
		if !ok || listen != enc.Resources[0].Providers[0].KMS.Endpoint {
			t.Fatalf("--listen %q, encryption config endpoint %q", listen, enc.Resources[0].Providers[0].KMS.Endpoint)
		}
		sockDir := filepath.Dir(strings.TrimPrefix(listen, "unix://"))
		var mounted bool
		for _, m := range c.VolumeMounts {
			if m.MountPath == sockDir {
				for _, v := range pod.Spec.Volumes {
					if v.Name == m.Name && v.HostPath != nil && v.HostPath.Path == sockDir {
						mounted = true
					}
				}
			}
		}
		if !mounted {
			t.Fatalf("socket directory %s is not a hostPath mount at the same path", sockDir)
		}
		for _, flag := range []string{"keys", "state-dir", "key"} {
			if _, ok := argValue(c.Args, flag); !ok {
				t.Errorf("pod args lack --%s", flag)
			}
		}
		sc := c.SecurityContext
		if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
			sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" {
			t.Errorf("container security context is not locked down: %+v", sc)
		}
		for _, e := range c.Env {
			if strings.Contains(e.Name, "PIN") && !strings.HasSuffix(e.Name, "PIN_FILE") {
				t.Errorf("the manifest sets %s: a PIN must come from a file", e.Name)
			}
		}
	})

	t.Run("the systemd unit serves the same socket and stops with SIGTERM", func(t *testing.T) {
		unit := string(readInfra(t, "kmsshim.service"))
		m := regexp.MustCompile(`--listen=(\S+)`).FindStringSubmatch(unit)
		if m == nil {
			t.Fatal("unit has no --listen")
		}
		// /var/run is a symlink to /run on systemd hosts.
		if strings.Replace(enc.Resources[0].Providers[0].KMS.Endpoint, "/var/run/", "/run/", 1) != m[1] {
			t.Fatalf("unit listens on %s, encryption config names %s", m[1], enc.Resources[0].Providers[0].KMS.Endpoint)
		}
		for _, want := range []string{"KillSignal=SIGTERM", "RuntimeDirectory=clusterkeys", "RuntimeDirectoryMode=0700", "UMask=0077", "NoNewPrivileges=yes", "ExecStart=/usr/local/bin/kmsshim"} {
			if !strings.Contains(unit, want) {
				t.Errorf("unit lacks %q", want)
			}
		}
	})
}

// TestEncryptionConfigWithKubeAPIServerLoader loads the checked-in
// EncryptionConfiguration with kube-apiserver's own loader (decoding,
// validation, KMS v2 provider set-up), with the endpoint pointed at a shim
// started for the test, and writes and reads a Secret value through the
// transformer kube-apiserver would use for secrets.
func TestEncryptionConfigWithKubeAPIServerLoader(t *testing.T) {
	sock, _ := startShim(t, "kubernetes-kms", time.Second)
	cfg := readInfra(t, "encryption-config.yaml")
	var enc apiserverv1.EncryptionConfiguration
	if err := yaml.UnmarshalStrict(cfg, &enc); err != nil {
		t.Fatal(err)
	}
	cfg = bytes.ReplaceAll(cfg, []byte(enc.Resources[0].Providers[0].KMS.Endpoint), []byte("unix://"+sock))
	path := filepath.Join(t.TempDir(), "encryption-config.yaml")
	if err := os.WriteFile(path, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	loaded, err := encryptionconfig.LoadEncryptionConfig(ctx, path, false, "apiserver-test")
	if err != nil {
		t.Fatalf("kube-apiserver's loader refuses the config: %v", err)
	}
	tr, ok := loaded.Transformers[schema.GroupResource{Resource: "secrets"}]
	if !ok {
		t.Fatalf("no transformer for secrets: %v", loaded.Transformers)
	}
	raw, pw := secretValue(t, "loader")
	key := value.DefaultContext("/registry/secrets/default/loader")
	var stored []byte
	deadline := time.Now().Add(30 * time.Second)
	for {
		// The KMS v2 write state appears after the first Status+Encrypt.
		stored, err = tr.TransformToStorage(ctx, raw, key)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("TransformToStorage: %v", err)
	}
	if !bytes.HasPrefix(stored, []byte(prefix)) || bytes.Contains(stored, []byte(pw)) {
		t.Fatalf("stored value starts %q; want %q and no plaintext", stored[:min(40, len(stored))], prefix)
	}
	got, _, err := readTransformer(t, sock).TransformFromStorage(ctx, stored, key)
	if err != nil || !bytes.Equal(got, raw) {
		t.Fatalf("read back through a fresh client: %d bytes, %v", len(got), err)
	}
	for _, hc := range loaded.HealthChecks {
		req := httptest.NewRequestWithContext(ctx, "GET", "/healthz/kms-providers", nil)
		if err := hc.Check(req); err != nil {
			t.Errorf("kube-apiserver health check %s: %v", hc.Name(), err)
		}
	}
}
