package gateway

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/clusterkeys/clusterkeys/pkg/api"
	"github.com/clusterkeys/clusterkeys/pkg/auth"
)

// BenchmarkGatewayOverhead measures what the gateway adds to a request
// whose handler writes a small fixed body: request id, timeout, limits,
// authentication, metrics and the access log line (text, to /dev/null, so
// that the write syscall is counted as it is when deployed).
func BenchmarkGatewayOverhead(b *testing.B) {
	tf, err := auth.ParseTokenFile(strings.NewReader(memberToken + ",bob,p1,\"member\"\n"))
	if err != nil {
		b.Fatal(err)
	}
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { devnull.Close() })
	body := []byte(`{"ok":true}` + "\n")
	g, err := New(Config{Auth: tf, Logger: slog.New(slog.NewTextHandler(devnull, nil))},
		api.Route{Pattern: "POST /v1/clusters/{cluster}/certificates", Name: "sign", Handler: func(w http.ResponseWriter, r *http.Request) error {
			w.Header().Set("Content-Type", "application/json")
			_, err := w.Write(body)
			return err
		}})
	if err != nil {
		b.Fatal(err)
	}
	req := httptest.NewRequest("POST", "/v1/clusters/c1/certificates", http.NoBody)
	req.Header.Set("Authorization", "Bearer "+memberToken)
	req.Header.Set("Content-Type", "application/json")
	w := &discardWriter{header: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		clear(w.header)
		g.ServeHTTP(w, req)
	}
}

// discardWriter is a ResponseWriter that keeps nothing, so that the
// benchmark counts the gateway's work and not a recorder's.
type discardWriter struct {
	header http.Header
}

func (w *discardWriter) Header() http.Header         { return w.header }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(int)             {}
