package lambdahttp

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/aws/aws-lambda-go/events"
)

// FuzzHandler feeds arbitrary event JSON through the adapter: it must never
// panic, and a request it accepts must reach the handler with a valid method.
func FuzzHandler(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	if err != nil {
		f.Fatalf("glob fixtures: %v", err)
	}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatalf("read %s: %v", name, err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"rawPath":"/%zz","requestContext":{"http":{"method":"GET"}},"isBase64Encoded":true,"body":"!!"}`))
	h := Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "" {
			panic("request reached the handler without a method")
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	f.Fuzz(func(t *testing.T, data []byte) {
		var ev events.APIGatewayV2HTTPRequest
		if err := json.Unmarshal(data, &ev); err != nil {
			return
		}
		resp, err := h(context.Background(), ev)
		if err == nil && resp.StatusCode == 0 {
			t.Fatalf("accepted event produced status 0")
		}
	})
}
