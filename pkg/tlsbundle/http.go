package tlsbundle

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/clusterkeys/clusterkeys/pkg/api"
	"github.com/clusterkeys/clusterkeys/pkg/auth"
	"github.com/clusterkeys/clusterkeys/pkg/metrics"
)

// MaxBody is the request body limit of POST /v1/tls/validate: room for
// MaxInputBytes of material after JSON escaping of PEM line breaks.
const MaxBody = MaxInputBytes + MaxInputBytes/2

// ContainerLoader loads the material of a stored certificate container
// (Barbican's certificate containers, later) named by container_ref.
// It returns an error wrapping api.ErrNotFound when there is no such
// container, or another api sentinel / *api.Error.
type ContainerLoader interface {
	LoadContainer(ctx context.Context, ref string) (Input, error)
}

// Options configure a Validator. The zero value is usable.
type Options struct {
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// ContainerLoader resolves container_ref; nil means container_ref is
	// answered with CodeContainerRefUnsupported.
	ContainerLoader ContainerLoader
	// Registerer receives the clusterkeys_tls_validations_total and
	// clusterkeys_tls_validation_issues_total counters; nil means none.
	Registerer metrics.Registerer
	// NoCache turns off what a Validator remembers between requests:
	// parsed certificates (up to 4 MiB of DER) and successful x509 path
	// validations (DefaultPathCacheSize of them), so that a bundle
	// validated again is neither parsed nor has its signatures checked a
	// second time. The reports are the same with or without.
	NoCache bool
}

// Validator serves validate-TLS-bundle. It is safe for concurrent use.
type Validator struct {
	now     func() time.Time
	loader  ContainerLoader
	results *metrics.CounterVec
	issues  *metrics.CounterVec
	caches  caches
}

// NewValidator returns a Validator. Metrics that are already registered
// with opts.Registerer (a second Validator on one registry) are shared.
func NewValidator(opts Options) *Validator {
	v := &Validator{now: opts.Now, loader: opts.ContainerLoader}
	if !opts.NoCache {
		v.caches = caches{paths: newPathCache(DefaultPathCacheSize), certs: newCertCache(certCacheBytes)}
	}
	if v.now == nil {
		v.now = time.Now
	}
	v.results = metrics.NewCounterVec(metrics.CounterOpts{
		Name: "clusterkeys_tls_validations_total",
		Help: "TLS bundle validations by result (valid, invalid).",
	}, []string{"result"})
	v.issues = metrics.NewCounterVec(metrics.CounterOpts{
		Name: "clusterkeys_tls_validation_issues_total",
		Help: "Errors and warnings reported by TLS bundle validations, by severity and code.",
	}, []string{"severity", "code"})
	v.results, _ = metrics.Register(opts.Registerer, v.results)
	v.issues, _ = metrics.Register(opts.Registerer, v.issues)
	return v
}

// Validate resolves container_ref through the ContainerLoader, then runs
// Validate with the Validator's clock and counts the result. The error is
// only the loader's (e.g. a container that does not exist); everything
// wrong with the bundle is in the Report.
func (v *Validator) Validate(ctx context.Context, in Input) (Report, error) {
	if in.ContainerRef != "" && v.loader != nil {
		if in.Certificate != "" || in.PrivateKey != "" || in.Intermediates != "" || in.PKCS12 != "" {
			rep := Report{Errors: []Issue{{Code: CodeConflictingInputs, Field: FieldContainerRef,
				Message: "give either container_ref or the certificate material, not both"}}, Warnings: []Issue{}, Chain: []ChainCert{}}
			v.count(&rep)
			return rep, nil
		}
		loaded, err := v.loader.LoadContainer(ctx, in.ContainerRef)
		if err != nil {
			return Report{}, fmt.Errorf("load container %q: %w", in.ContainerRef, err)
		}
		loaded.ContainerRef = ""
		loaded.Hostname, loaded.CABundle = in.Hostname, in.CABundle
		if in.Passphrase != "" {
			loaded.Passphrase = in.Passphrase
		}
		in = loaded
	}
	rep := validate(in, v.now(), v.caches)
	v.count(&rep)
	return rep, nil
}

func (v *Validator) count(rep *Report) {
	rep.Valid = len(rep.Errors) == 0
	result := "invalid"
	if rep.Valid {
		result = "valid"
	}
	v.results.WithLabelValues(result).Inc()
	for _, i := range rep.Errors {
		v.issues.WithLabelValues("error", i.Code).Inc()
	}
	for _, i := range rep.Warnings {
		v.issues.WithLabelValues("warning", i.Code).Inc()
	}
}

// Routes returns POST /v1/tls/validate. A principal with any clusterkeys
// role (admin, member or reader) may call it: it reads no stored data
// (unless container_ref is used, whose loader enforces its own access). The
// answer is the Report with 200 when valid and 400 when not; malformed
// requests are problem+json.
func Routes(v *Validator) []api.Route {
	return []api.Route{{
		Pattern: "POST /v1/tls/validate",
		Name:    "tls_validate",
		MaxBody: MaxBody,
		Handler: v.serveValidate,
	}}
}

func (v *Validator) serveValidate(w http.ResponseWriter, r *http.Request) error {
	p, ok := auth.FromContext(r.Context())
	if !ok {
		return fmt.Errorf("validate: no principal: %w", api.ErrUnauthenticated)
	}
	if !p.HasRole() {
		return api.New(http.StatusForbidden, api.CodeForbidden,
			"validating a TLS bundle needs the admin, member or reader role")
	}
	var in Input
	if err := api.DecodeJSON(r, &in, false); err != nil {
		return err
	}
	rep, err := v.Validate(r.Context(), in)
	if err != nil {
		return err
	}
	status := http.StatusOK
	if !rep.Valid {
		status = http.StatusBadRequest
	}
	return api.WriteJSON(w, status, rep)
}
