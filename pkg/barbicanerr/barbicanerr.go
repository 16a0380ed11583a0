// Package barbicanerr maps the error of a failed OpenStack Barbican call
// (gophercloud keymanager v1) to the api sentinel that says what the caller
// of clusterkeys gets: one mapping for Barbican custody (pkg/keys/barbican)
// and for the container_ref loader (pkg/barbicanref), without either
// importing the other.
package barbicanerr

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"

	"github.com/gophercloud/gophercloud/v2"

	"github.com/clusterkeys/clusterkeys/pkg/api"
)

// Classify wraps err, the error of the Barbican call described by what,
// with the api sentinel its cause maps to: Barbican answering 401 or 403 is
// a 502 backend_error whose detail says why (it wraps api.ErrBackend); 404
// wraps api.ErrNotFound; 5xx, a refused connection or a timeout wrap
// api.ErrUnavailable; any other HTTP status wraps api.ErrBackend. Other
// errors are wrapped as they are. The message starts with what; callers add
// their own prefix.
func Classify(what string, err error) error {
	var code gophercloud.ErrUnexpectedResponseCode
	if errors.As(err, &code) {
		switch {
		case code.Actual == http.StatusUnauthorized || code.Actual == http.StatusForbidden:
			// The client gets the reason (a 502 that only says "a backend
			// refused" sends the operator hunting); the detail names no
			// endpoint, token or key.
			return api.New(http.StatusBadGateway, api.CodeBackendError, fmt.Sprintf(
				"Barbican refused clusterkeys' own credentials (HTTP %d): the service user needs Barbican's creator role in its project", code.Actual)).
				Wrap(fmt.Errorf("%s: Barbican refused our credentials (HTTP %d): %w", what, code.Actual, api.ErrBackend))
		case code.Actual == http.StatusNotFound:
			return fmt.Errorf("%s: %w", what, api.ErrNotFound)
		case code.Actual >= 500:
			return fmt.Errorf("%s: Barbican answered HTTP %d: %w", what, code.Actual, api.ErrUnavailable)
		}
		return fmt.Errorf("%s: Barbican answered HTTP %d: %w", what, code.Actual, api.ErrBackend)
	}
	var ne net.Error
	var ue *url.Error
	if errors.As(err, &ne) || errors.As(err, &ue) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: Barbican unreachable: %w: %w", what, api.ErrUnavailable, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}
