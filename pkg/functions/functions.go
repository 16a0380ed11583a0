// Package functions is the table of clusterkeys' deployable functions: each
// one's name, the routes it serves and what it needs. localrun (in process
// and --exec), the Lambda mains (through pkg/lambdaapp), the Makefile's
// function list (cmd/list) and the route checks of the SAM template and the
// OpenAPI document are all derived from All.
//
// Adding a function is an exported Function variable listed in All and a
// functions/<name>/main.go that calls lambdaapp.Main with it. A function
// with Store false must not link store or custody code; its main builds
// its own gateway (see functions/validatebundle), since this package
// imports every service.
package functions

import (
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"

	"github.com/clusterkeys/clusterkeys/pkg/api"
	"github.com/clusterkeys/clusterkeys/pkg/backends"
	"github.com/clusterkeys/clusterkeys/pkg/barbicanref"
	"github.com/clusterkeys/clusterkeys/pkg/ca"
	"github.com/clusterkeys/clusterkeys/pkg/config"
	"github.com/clusterkeys/clusterkeys/pkg/keywrap"
	"github.com/clusterkeys/clusterkeys/pkg/magnum"
	"github.com/clusterkeys/clusterkeys/pkg/metrics"
	"github.com/clusterkeys/clusterkeys/pkg/tlsbundle"
)

// Function is one deployable function: functions/<Name>/main.go, built as
// the Lambda bootstrap bin/lambda/<Name>/bootstrap.
type Function struct {
	// Name is the directory under functions/ and the Lambda zip's name.
	Name string
	// Routes builds the function's routes from d. A zero Deps builds
	// routes whose patterns, names and formats can be read but not served.
	Routes func(d *Deps) []api.Route
	// Store is whether the function opens the metadata store and key
	// custody (Deps.Backends); a function without links neither.
	Store bool
	// Cgo is whether its binary needs cgo when its build links pkcs11
	// custody (crypto11), so that make package builds it with a C compiler
	// then (the default LAMBDA_BACKENDS links no pkcs11: see
	// pkg/backends/all).
	Cgo bool
}

// The deployable functions. A function's main passes its own to
// lambdaapp.Main rather than looking it up by name in All, so that its
// binary links only the services its routes use (the linker drops the
// others) and not every function's.
var (
	RekeyCluster   = Function{Name: "rekeycluster", Store: true, Cgo: true, Routes: rekeyRoutes}
	SignCSR        = Function{Name: "signcsr", Store: true, Cgo: true, Routes: signRoutes}
	Keywrap        = Function{Name: "keywrap", Store: true, Cgo: true, Routes: keywrapRoutes}
	ValidateBundle = Function{Name: "validatebundle", Routes: validateRoutes}
)

// All are the deployable functions, in the order localrun composes them.
var All = []Function{RekeyCluster, SignCSR, Keywrap, ValidateBundle}

func rekeyRoutes(d *Deps) []api.Route    { return d.caRoutes(false) }
func signRoutes(d *Deps) []api.Route     { return d.caRoutes(true) }
func keywrapRoutes(d *Deps) []api.Route  { return keywrap.Routes(d.Keywrap()) }
func validateRoutes(d *Deps) []api.Route { return tlsbundle.Routes(d.Validator()) }

// Build builds f's routes from d, and returns the error of a service they
// use that failed to build (a configuration error), if any.
func (f Function) Build(d *Deps) ([]api.Route, error) {
	routes := f.Routes(d)
	if d.validatorErr != nil {
		return nil, d.validatorErr
	}
	return routes, nil
}

// signRouteNames are the routes of signcsr, natively and through Magnum's
// POST /v1/certificates; every other CA route (create, show and rekey the
// CA, and Magnum's GET and PATCH /v1/certificates/{cluster}) belongs to
// rekeycluster.
var signRouteNames = []string{"ca_sign", "magnum_ca_sign"}

// caRoutes are the CA's routes, native (pkg/ca) and Magnum's (pkg/magnum):
// those of signcsr when sign, the others otherwise.
func (d *Deps) caRoutes(sign bool) []api.Route {
	a := d.Authority()
	all := append(ca.Routes(a), magnum.Routes(a, d.Config.PublicURL)...)
	return slices.DeleteFunc(all, func(r api.Route) bool { return slices.Contains(signRouteNames, r.Name) != sign })
}

// Lookup returns the function called name.
func Lookup(name string) (Function, error) {
	i := slices.IndexFunc(All, func(f Function) bool { return f.Name == name })
	if i < 0 {
		return Function{}, fmt.Errorf("unknown function %q (want %s)", name, strings.Join(Names(), ", "))
	}
	return All[i], nil
}

// Names are the names of All, in order.
func Names() []string {
	var out []string
	for _, f := range All {
		out = append(out, f.Name)
	}
	return out
}

// Deps are what the functions' routes are built from. The services are
// built on first use and shared by every function given the same Deps, so
// that functions served in one process share one CA (its signer cache and
// metrics) and one key-wrapping service.
type Deps struct {
	// Config is the resolved configuration.
	Config config.Config
	// Backends are the opened store and custody; nil for a function with
	// Store false, or to list routes only.
	Backends *backends.Backends
	Logger   *slog.Logger
	Registry metrics.Registerer

	authorityOnce sync.Once
	authority     *ca.Authority
	keywrapOnce   sync.Once
	keywrap       *keywrap.Service
	validatorOnce sync.Once
	validator     *tlsbundle.Validator
	validatorErr  error
}

// backends returns the store and custody, nil without Backends.
func (d *Deps) backends() (backends.Store, backends.Custody, int) {
	if d.Backends == nil {
		return nil, nil, 0
	}
	return d.Backends.Store, d.Backends.Custody, d.Backends.SignerCacheSize
}

// Authority is the CA of rekeycluster and signcsr.
func (d *Deps) Authority() *ca.Authority {
	d.authorityOnce.Do(func() {
		st, cu, cache := d.backends()
		d.authority = ca.New(st, cu, ca.Options{Logger: d.Logger, Registerer: d.Registry, SignerCacheSize: cache})
	})
	return d.authority
}

// Keywrap is the key-wrapping service of keywrap.
func (d *Deps) Keywrap() *keywrap.Service {
	d.keywrapOnce.Do(func() {
		st, cu, _ := d.backends()
		d.keywrap = keywrap.New(st, cu, keywrap.Options{Logger: d.Logger, Registerer: d.Registry})
	})
	return d.keywrap
}

// Validator is the TLS bundle validator of validatebundle. Call Init first
// to see a configuration error; Validator alone ignores one.
func (d *Deps) Validator() *tlsbundle.Validator {
	d.validatorOnce.Do(func() {
		d.validator, d.validatorErr = barbicanref.NewValidator(d.Config, d.Registry)
	})
	return d.validator
}

// Init builds every service that can fail to build, so that a
// configuration error shows at start rather than as a nil service. A
// process serving one function calls its Build instead, which builds only
// what that function uses.
func (d *Deps) Init() error {
	d.Validator()
	return d.validatorErr
}
