package main

import (
	"bytes"
	"regexp"
	"strings"
	"testing"

	"github.com/clusterkeys/clusterkeys/pkg/config"
)

// TestBanner checks what the start banner tells a user to run, per auth
// mode: with Keystone there is no token file to name or grep.
func TestBanner(t *testing.T) {
	const url = "http://127.0.0.1:8443"
	tokenLine := regexp.MustCompile(`(?m)^  export CLUSTERKEYS_TOKEN=(\S+)$`)
	tests := []struct {
		name     string
		auth     string
		newToken string
		store    string // sqlite when empty
		want     []string
		notWant  []string
	}{
		{
			name: "keystone",
			auth: "keystone",
			want: []string{
				"export OS_TOKEN=$(openstack token issue -f value -c id)",
				`curl -s -X PUT -H "X-Auth-Token: $OS_TOKEN" -H 'Content-Type: application/json' ` + url + "/v1/clusters/demo/ca",
			},
			notWant: []string{"tokens.csv", "CLUSTERKEYS_TOKEN", "grep"},
		},
		{
			name:     "token file, new token",
			auth:     "token-file",
			newToken: "fresh-token",
			want:     []string{"  tokens: state/tokens.csv\n", "  export CLUSTERKEYS_TOKEN=fresh-token\n", `"Authorization: Bearer $CLUSTERKEYS_TOKEN"`},
			notWant:  []string{"OS_TOKEN"},
		},
		{
			name:    "token file, existing",
			auth:    "token-file",
			want:    []string{"  tokens: state/tokens.csv\n", "export CLUSTERKEYS_TOKEN=$(grep -v '^#' ", `"Authorization: Bearer $CLUSTERKEYS_TOKEN"`},
			notWant: []string{"OS_TOKEN"},
		},
		{
			// The DSN may hold a password: the banner names the kind only.
			name:    "postgres store",
			auth:    "token-file",
			store:   "postgres://ck:s3cret-pw@db.example:5432/ck?sslmode=verify-full",
			want:    []string{"(store postgres, keys software)"},
			notWant: []string{"s3cret-pw", "db.example", "postgres://"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store := tt.store
			if store == "" {
				store = "sqlite"
			}
			cfg := config.Config{Auth: tt.auth, TokenAuthFile: "state/tokens.csv", StateDir: "state", Store: store, Keys: "software"}
			var b bytes.Buffer
			printBanner(&b, cfg, url, tt.newToken, false)
			out := b.String()
			// The e2e harness waits for these two lines.
			if !strings.HasPrefix(out, "clusterkeys serving on "+url) || !strings.Contains(out, "\nCtrl-C stops.\n") {
				t.Errorf("banner lacks the serving or Ctrl-C line:\n%s", out)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("banner lacks %q:\n%s", w, out)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(out, w) {
					t.Errorf("banner names %q:\n%s", w, out)
				}
			}
			if m := tokenLine.FindStringSubmatch(out); tt.newToken != "" && (m == nil || m[1] != tt.newToken) {
				t.Errorf("the new token is not on an export line of its own:\n%s", out)
			}
		})
	}
}
