package tlsserve

import (
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/clusterkeys/clusterkeys/internal/testproc"
)

func TestCheckListen(t *testing.T) {
	tests := []struct {
		name         string
		addr         string
		tlsOn        bool
		insecureHTTP bool
		refused      bool
		warned       bool
	}{
		{name: "IPv4 loopback serves plain HTTP", addr: "127.0.0.1:8080"},
		{name: "anywhere in 127/8 is loopback", addr: "127.1.2.3:8080"},
		{name: "IPv6 loopback serves plain HTTP", addr: "[::1]:8080"},
		{name: "localhost serves plain HTTP", addr: "localhost:8080"},
		{name: "an IPv4-mapped loopback serves plain HTTP", addr: "[::ffff:127.0.0.1]:8080"},
		{name: "every IPv4 interface is refused without TLS", addr: "0.0.0.0:8080", refused: true},
		{name: "a private address is refused without TLS", addr: "10.0.0.1:8080", refused: true},
		{name: "an empty host (every interface) is refused without TLS", addr: ":8080", refused: true},
		{name: "every IPv6 interface is refused without TLS", addr: "[::]:8080", refused: true},
		{name: "a name other than localhost is refused without TLS", addr: "myhost.example:8080", refused: true},
		{name: "with TLS any address is fine", addr: "0.0.0.0:8443", tlsOn: true},
		{name: "with TLS an empty host is fine", addr: ":8443", tlsOn: true},
		{name: "--insecure-http allows every interface, with a warning", addr: "0.0.0.0:8080", insecureHTTP: true, warned: true},
		{name: "--insecure-http allows a private address, with a warning", addr: "10.0.0.1:8080", insecureHTTP: true, warned: true},
		{name: "--insecure-http allows an empty host, with a warning", addr: ":8080", insecureHTTP: true, warned: true},
		{name: "--insecure-http on loopback warns of nothing", addr: "127.0.0.1:8080", insecureHTTP: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logs := &testproc.Output{}
			err := CheckListen(tt.addr, tt.tlsOn, tt.insecureHTTP, slog.New(slog.NewTextHandler(logs, nil)))
			if tt.refused {
				if !errors.Is(err, ErrPlainHTTP) {
					t.Fatalf("CheckListen(%q) = %v, want a refusal", tt.addr, err)
				}
				for _, want := range []string{"--insecure-http", "--tls-cert-file", tt.addr} {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("refusal %q does not name %s", err, want)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("CheckListen(%q) = %v", tt.addr, err)
			}
			warned := strings.Contains(logs.String(), "level=WARN") && strings.Contains(logs.String(), "in clear")
			if warned != tt.warned {
				t.Errorf("warned %v, want %v; logs: %q", warned, tt.warned, logs)
			}
		})
	}
}

func TestCheckListenRefusesAnAddressWithoutPort(t *testing.T) {
	if err := CheckListen("127.0.0.1", false, false, nil); err == nil || !strings.Contains(err.Error(), "--listen") {
		t.Fatalf("CheckListen without port = %v, want an error naming --listen", err)
	}
}
