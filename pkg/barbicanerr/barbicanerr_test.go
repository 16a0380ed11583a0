package barbicanerr

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/gophercloud/gophercloud/v2"

	"github.com/clusterkeys/clusterkeys/pkg/api"
)

func TestClassifyMapsToStableSentinels(t *testing.T) {
	status := func(code int) error {
		return gophercloud.ErrUnexpectedResponseCode{Method: "GET", URL: "http://barbican/v1/secrets", Actual: code}
	}
	tests := []struct {
		name string
		err  error
		want error
	}{
		{"Barbican refusing our token is a backend error", status(http.StatusUnauthorized), api.ErrBackend},
		{"Barbican forbidding the project is a backend error", status(http.StatusForbidden), api.ErrBackend},
		{"a missing object is not found", status(http.StatusNotFound), api.ErrNotFound},
		{"Barbican failing is unavailable", status(http.StatusBadGateway), api.ErrUnavailable},
		{"any other answer is a backend error", status(http.StatusConflict), api.ErrBackend},
		{"a timeout is unavailable", context.DeadlineExceeded, api.ErrUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Classify("fetch secret", tt.err)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Classify = %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), "fetch secret: ") {
				t.Errorf("Classify = %q, want it to say what was done", err)
			}
		})
	}
	t.Run("refused credentials are a 502 whose detail says why, and nothing more", func(t *testing.T) {
		for _, code := range []int{http.StatusUnauthorized, http.StatusForbidden} {
			e := api.ErrorFor(fmt.Errorf("sign csr: %w", Classify("fetch secret", status(code))))
			if e.Status != http.StatusBadGateway || e.Code != api.CodeBackendError ||
				!strings.Contains(e.Detail, fmt.Sprintf("HTTP %d", code)) || !strings.Contains(e.Detail, "creator") {
				t.Fatalf("client sees %d %s %q", e.Status, e.Code, e.Detail)
			}
			if strings.Contains(e.Detail, "http://barbican") {
				t.Fatalf("the detail names Barbican's endpoint: %q", e.Detail)
			}
		}
	})
	t.Run("any other error is kept as it is", func(t *testing.T) {
		cause := errors.New("boom")
		if err := Classify("list secrets", cause); !errors.Is(err, cause) {
			t.Fatalf("Classify = %v, want it to wrap %v", err, cause)
		}
	})
}
