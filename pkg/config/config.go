// Package config holds the settings shared by localrun, the Lambda functions
// and the KMS shim, and reads them from pflag flags and CLUSTERKEYS_<FLAG>
// environment variables (a flag given on the command line wins over the
// environment; Lambda functions read the environment only).
//
// Secrets (the PKCS#11 PIN, Barbican credentials, the software master key,
// a store DSN's password) are never flags: they come from files or the
// environment, so they do not show in ps output.
package config

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/clusterkeys/clusterkeys/internal/secretfile"
	"github.com/spf13/pflag"
)

// EnvPrefix prefixes every environment variable that sets a flag.
const EnvPrefix = "CLUSTERKEYS_"

// Config is the settings of a clusterkeys process.
type Config struct {
	// Listen is the address localrun serves on.
	Listen string
	// TLSCertFile and TLSPrivateKeyFile, both or neither, make localrun
	// serve HTTPS (reloaded when they change); InsecureHTTP allows plain
	// HTTP on a non-loopback Listen.
	TLSCertFile, TLSPrivateKeyFile string
	InsecureHTTP                   bool
	// StateDir holds the SQLite file, the software master key and the token
	// file by default.
	StateDir string
	// TokenAuthFile is the static token file (kube-apiserver CSV format).
	TokenAuthFile string
	// Auth is how requests are authenticated: "token-file" or "keystone".
	Auth string
	// Keys is the key custody backend, by its registered name (see
	// CustodyBackend): "software", "pkcs11" or "barbican".
	Keys string
	// Store is the metadata store, a value a registered StoreBackend takes:
	// "sqlite:PATH", or a PostgreSQL URI (postgres://… or postgresql://…,
	// any form pgx takes). It may hold a
	// password: show StoreName instead.
	Store string
	// StoreFile names a file (mode 0600) that holds Store, so that a DSN's
	// password is neither on a command line nor in the environment. Resolve
	// reads it into Store.
	StoreFile string
	// MasterKeyFile is software custody's master key.
	MasterKeyFile string
	// PKCS11Module, PKCS11TokenLabel and PKCS11PinFile configure pkcs11
	// custody; the PIN may also come from CLUSTERKEYS_PKCS11_PIN.
	PKCS11Module     string
	PKCS11TokenLabel string
	PKCS11PinFile    string
	// PKCS11CallTimeout bounds each call into the PKCS#11 token (key
	// generation gets six times as long).
	PKCS11CallTimeout time.Duration
	// OSCloud names the clouds.yaml entry (OS_CLOUD) whose credentials
	// clusterkeys uses as a service: for Barbican custody and to validate
	// Keystone tokens. Without it the OS_* variables are used.
	OSCloud string
	// BarbicanEndpoint overrides the key-manager endpoint from the catalog;
	// with no Keystone (tests) requests carry X-Project-Id BarbicanProject.
	BarbicanEndpoint string
	BarbicanProject  string
	// AuthCacheTTL bounds how long a Keystone token validation is reused.
	AuthCacheTTL time.Duration
	// ReconcileInterval is the time between two runs of the custody
	// reconciler (pkg/reconcile) in long-running processes; 0 disables it.
	// OrphanSafetyWindow is how old a key no row names must be before the
	// reconciler destroys it.
	ReconcileInterval  time.Duration
	OrphanSafetyWindow time.Duration
	// AdminProject is the Keystone project whose admins are clusterkeys'
	// admins (besides system-scoped admins): id, name in the Default domain,
	// or DOMAIN/NAME. An admin of any other project is that project's only.
	AdminProject string
	// LogLevel is debug, info, warn or error; LogFormat is text or json.
	LogLevel  string
	LogFormat string
	// Limits: requests served at once (all routes; POST /v1/tls/validate)
	// and failed authentications allowed per client address in a window;
	// 0 means no limit.
	MaxInFlight, MaxInFlightValidate int
	MaxAuthFailures                  int
	AuthFailureWindow                time.Duration
	// PublicURL is the address clients reach clusterkeys at (e.g.
	// https://keys.example.com), from which Magnum's links are built; links
	// are relative ("/v1/…") when it is empty. Never taken from a request.
	PublicURL string
}

// Default returns the embedded defaults: software keys, SQLite, a token file,
// all in ./.clusterkeys, serving on 127.0.0.1:8080.
func Default() Config {
	return Config{
		Listen:       "127.0.0.1:8080",
		StateDir:     ".clusterkeys",
		Auth:         "token-file",
		Keys:         "software",
		AuthCacheTTL: 10 * time.Second,
		AdminProject: "admin",
		LogLevel:     "info",
		LogFormat:    "text",
		// The same as gateway.DefaultLimits (a test keeps them equal).
		MaxInFlight:         64,
		MaxInFlightValidate: max(1, runtime.GOMAXPROCS(0)/2),
		MaxAuthFailures:     20,
		AuthFailureWindow:   time.Minute,

		// pkcs11.DefaultCallTimeout, without importing cgo here.
		PKCS11CallTimeout: 10 * time.Second,

		ReconcileInterval:  15 * time.Minute,
		OrphanSafetyWindow: time.Hour,
	}
}

// BindFlags registers c's fields as flags on fs, with c's values as defaults.
func (c *Config) BindFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.Listen, "listen", c.Listen, "address to serve on; other than loopback only with TLS or --insecure-http")
	fs.StringVar(&c.TLSCertFile, "tls-cert-file", c.TLSCertFile, "PEM certificate (chain) to serve HTTPS with, reloaded when it changes")
	fs.StringVar(&c.TLSPrivateKeyFile, "tls-private-key-file", c.TLSPrivateKeyFile, "PEM private key of --tls-cert-file, reloaded when it changes")
	fs.BoolVar(&c.InsecureHTTP, "insecure-http", c.InsecureHTTP, "allow plain HTTP on a non-loopback --listen (behind a TLS-terminating proxy)")
	fs.StringVar(&c.StateDir, "state-dir", c.StateDir, "directory for the SQLite file, master key and token file")
	fs.StringVar(&c.TokenAuthFile, "token-auth-file", c.TokenAuthFile, "static token file, CSV token,user,project,\"roles\" (default <state-dir>/tokens.csv)")
	fs.StringVar(&c.Auth, "auth", c.Auth, "authentication: token-file or keystone")
	fs.StringVar(&c.Keys, "keys", c.Keys, "key custody: "+custodyNames())
	fs.StringVar(&c.Store, "store", c.Store, "metadata store: "+StoreUsage(false)+" (default sqlite:<state-dir>/clusterkeys.db)")
	fs.StringVar(&c.StoreFile, "store-file", c.StoreFile, "file (mode 0600) holding the --store value, e.g. a postgres:// DSN with its password")
	fs.StringVar(&c.MasterKeyFile, "master-key-file", c.MasterKeyFile, "software custody master key, 32 bytes, mode 0600 (default <state-dir>/master.key; CLUSTERKEYS_MASTER_KEY, base64, is used instead when set)")
	fs.StringVar(&c.PKCS11Module, "pkcs11-module", c.PKCS11Module, "path of the PKCS#11 library (e.g. libsofthsm2.so)")
	fs.StringVar(&c.PKCS11TokenLabel, "pkcs11-token-label", c.PKCS11TokenLabel, "label of the PKCS#11 token")
	fs.StringVar(&c.PKCS11PinFile, "pkcs11-pin-file", c.PKCS11PinFile, "file holding the PKCS#11 user PIN (or set CLUSTERKEYS_PKCS11_PIN)")
	fs.DurationVar(&c.PKCS11CallTimeout, "pkcs11-call-timeout", c.PKCS11CallTimeout, "how long one call into the PKCS#11 token may take before it fails as unavailable (key generation: 6x)")
	fs.StringVar(&c.OSCloud, "os-cloud", c.OSCloud, "clouds.yaml entry with the service credentials for Barbican and Keystone (default: OS_* variables)")
	fs.StringVar(&c.BarbicanEndpoint, "barbican-endpoint", c.BarbicanEndpoint, "Barbican endpoint, overriding the Keystone catalog (e.g. http://127.0.0.1:9311)")
	fs.StringVar(&c.BarbicanProject, "barbican-project", c.BarbicanProject, "with --barbican-endpoint and no Keystone: the X-Project-Id to use")
	fs.DurationVar(&c.AuthCacheTTL, "auth-cache-ttl", c.AuthCacheTTL, "with --auth keystone: how long a token validation is reused (a revoked token works at most this long)")
	fs.DurationVar(&c.ReconcileInterval, "reconcile-interval", c.ReconcileInterval, "time between runs of the custody reconciler (at start, then this often; one instance at a time); 0 disables it")
	fs.DurationVar(&c.OrphanSafetyWindow, "orphan-safety-window", c.OrphanSafetyWindow, "how old a custody key that no row names must be before the reconciler destroys it")
	fs.StringVar(&c.AdminProject, "admin-project", c.AdminProject, "with --auth keystone: the project whose admin role makes a clusterkeys admin (id, name in the Default domain, or DOMAIN/NAME; empty: system-scoped admins only); an admin of another project is that project's only")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "log level: debug, info, warn, error")
	fs.StringVar(&c.LogFormat, "log-format", c.LogFormat, "log format: text or json")
	fs.IntVar(&c.MaxInFlight, "max-in-flight", c.MaxInFlight, "requests served at once by this instance, beyond which 503 overloaded (0: no limit; /healthz, /readyz, /metrics never count)")
	fs.IntVar(&c.MaxInFlightValidate, "max-in-flight-validate", c.MaxInFlightValidate, "POST /v1/tls/validate requests served at once (default half of GOMAXPROCS, at least 1; 0: no limit)")
	fs.IntVar(&c.MaxAuthFailures, "max-auth-failures", c.MaxAuthFailures, "failed authentications per client address in --auth-failure-window before 429 rate_limited (0: no limit)")
	fs.DurationVar(&c.AuthFailureWindow, "auth-failure-window", c.AuthFailureWindow, "window of --max-auth-failures; one failure is allowed back every window/max")
	fs.StringVar(&c.PublicURL, "public-url", c.PublicURL, "URL clients reach clusterkeys at, for the links of Magnum responses (default: relative links)")
}

// Values returns c's settings by flag name, as the flags would print them.
func (c Config) Values() map[string]string {
	fs := pflag.NewFlagSet("values", pflag.ContinueOnError)
	c.BindFlags(fs)
	out := map[string]string{}
	fs.VisitAll(func(f *pflag.Flag) { out[f.Name] = f.Value.String() })
	return out
}

// EnvName returns the environment variable that sets flag name.
func EnvName(flag string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// ApplyEnv sets every flag of fs not given on the command line from its
// CLUSTERKEYS_<FLAG> variable, looked up with lookup (os.LookupEnv).
func ApplyEnv(fs *pflag.FlagSet, lookup func(string) (string, bool)) error {
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		if err != nil || f.Changed {
			return
		}
		if v, ok := lookup(EnvName(f.Name)); ok {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("%s: %w", EnvName(f.Name), e)
			}
		}
	})
	return err
}

// FromEnv returns the defaults overridden by CLUSTERKEYS_* variables, for
// Lambda functions, which have no command line.
func FromEnv() (Config, error) {
	c := Default()
	fs := pflag.NewFlagSet("env", pflag.ContinueOnError)
	c.BindFlags(fs)
	if err := ApplyEnv(fs, os.LookupEnv); err != nil {
		return Config{}, err
	}
	return c.Resolve()
}

// Resolve fills the settings derived from StateDir and checks the choices.
func (c Config) Resolve() (Config, error) {
	if c.TokenAuthFile == "" {
		c.TokenAuthFile = filepath.Join(c.StateDir, "tokens.csv")
	}
	if c.StoreFile != "" {
		if c.Store != "" {
			return c, errors.New("--store and --store-file: give one, not both")
		}
		s, err := readStoreFile(c.StoreFile)
		if err != nil {
			return c, err
		}
		c.Store = s
	}
	if c.Store == "" {
		c.Store = "sqlite:" + filepath.Join(c.StateDir, "clusterkeys.db")
	}
	if c.MasterKeyFile == "" {
		c.MasterKeyFile = filepath.Join(c.StateDir, "master.key")
	}
	if c.MaxInFlight < 0 || c.MaxInFlightValidate < 0 || c.MaxAuthFailures < 0 || c.AuthFailureWindow < 0 {
		return c, errors.New("--max-in-flight, --max-in-flight-validate, --max-auth-failures and --auth-failure-window must not be negative (0 means no limit)")
	}
	if c.ReconcileInterval < 0 || c.OrphanSafetyWindow <= 0 {
		return c, fmt.Errorf("--reconcile-interval %v, --orphan-safety-window %v: want an interval ≥ 0 and a positive window (longer than any create or rekey takes)",
			c.ReconcileInterval, c.OrphanSafetyWindow)
	}
	if (c.TLSCertFile == "") != (c.TLSPrivateKeyFile == "") {
		return c, errors.New("--tls-cert-file and --tls-private-key-file go together")
	}
	// A binary that links no custody (functions/validatebundle) opens
	// none, and takes any --keys.
	if names := CustodyBackends(); len(names) > 0 && !slices.ContainsFunc(names, func(b CustodyBackend) bool { return b.Name == c.Keys }) {
		if u, ok := unlinkedFor(false, c.Keys); ok {
			return c, notLinkedError("--keys", strconv.Quote(c.Keys), u, custodyNames())
		}
		return c, fmt.Errorf("--keys %q: want %s", c.Keys, custodyNames())
	}
	switch c.Auth {
	case "token-file", "keystone":
	default:
		return c, fmt.Errorf("--auth %q: want token-file or keystone", c.Auth)
	}
	// Likewise a binary that links no store takes any --store.
	if _, _, ok := StoreFor(c.Store); !ok && len(StoreBackends()) > 0 {
		// Never the value: it may hold a password.
		if u, ok := unlinkedFor(true, c.Store); ok {
			return c, notLinkedError("--store", c.StoreName(), u, StoreUsage(false))
		}
		return c, fmt.Errorf("--store %s: want %s", c.StoreName(), StoreUsage(true))
	}
	pub, err := checkPublicURL(c.PublicURL)
	if err != nil {
		return c, err
	}
	c.PublicURL = pub
	return c, nil
}

// StoreName describes the store without anything secret, for banners,
// logs and errors: "sqlite:PATH" for a store whose value is a path, the
// store's name for any other (a PostgreSQL URI shows as "postgres": its
// user, host and password are not shown), or the scheme of anything else.
func (c Config) StoreName() string {
	if b, _, ok := StoreFor(c.Store); ok {
		if b.Path {
			return c.Store
		}
		return b.Name
	}
	scheme, _, ok := strings.Cut(c.Store, ":")
	if !ok {
		return "(no scheme)"
	}
	if len(scheme) > 16 {
		scheme = scheme[:16] + "…"
	}
	return fmt.Sprintf("%q…", scheme+":")
}

// maxStoreFile bounds what readStoreFile reads.
const maxStoreFile = 4 << 10

// readStoreFile returns the store value held in path, without surrounding
// whitespace. As for the PKCS#11 PIN file, a file that group or others may
// read or write is refused: the DSN in it may hold a password. Errors name
// the file, never what it holds.
func readStoreFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("--store-file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("--store-file %s: %w", path, err)
	}
	if err := secretfile.CheckMode(fi, "--store-file", path); err != nil {
		return "", err
	}
	b, err := io.ReadAll(io.LimitReader(f, maxStoreFile+1))
	if err != nil {
		return "", fmt.Errorf("--store-file %s: %w", path, err)
	}
	if len(b) > maxStoreFile {
		return "", fmt.Errorf("--store-file %s is larger than %d bytes", path, maxStoreFile)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("--store-file %s is empty", path)
	}
	return s, nil
}

// checkPublicURL returns u without a trailing slash, or an error unless it
// is empty or an absolute http or https URL with a host and no user
// information, query or fragment.
func checkPublicURL(u string) (string, error) {
	if u == "" {
		return "", nil
	}
	p, err := url.Parse(u)
	if err != nil || (p.Scheme != "https" && p.Scheme != "http") || p.Host == "" || p.User != nil ||
		p.RawQuery != "" || p.ForceQuery || p.Fragment != "" || p.Opaque != "" {
		// Not echoed: a user part may hold a password.
		return "", errors.New("--public-url: want an http or https URL such as https://keys.example.com, without user, query or fragment")
	}
	return strings.TrimRight(u, "/"), nil
}

// NewLogger returns the slog logger c asks for, writing to w.
func (c Config) NewLogger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return nil, fmt.Errorf("--log-level %q: %w", c.LogLevel, err)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch c.LogFormat {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text", "":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", c.LogFormat)
}

// UsageError is a command line that does not parse: an unknown flag, a flag
// missing its value or given one of the wrong type, a stray argument.
// Commands print it and exit 2 (1 is for everything else, including a
// setting refused at start).
type UsageError struct {
	// Command is the command as typed, e.g. "localrun serve".
	Command string
	// Err says what is wrong, naming the flag.
	Err error
}

// Error names the command and the flag and points at --help.
func (e *UsageError) Error() string {
	return fmt.Sprintf("%s: %v\nRun '%s --help' for usage.", e.Command, e.Err, e.Command)
}

// Unwrap returns what is wrong.
func (e *UsageError) Unwrap() error { return e.Err }

// Parse parses args into fs (named after its command), allowing at most
// maxArgs arguments that are not flags. --help prints the flags and returns
// pflag.ErrHelp; any other mistake is a *UsageError.
func Parse(fs *pflag.FlagSet, args []string, maxArgs int) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return err
		}
		return &UsageError{Command: fs.Name(), Err: err}
	}
	if fs.NArg() > maxArgs {
		return &UsageError{Command: fs.Name(), Err: fmt.Errorf("unexpected argument %q", fs.Arg(maxArgs))}
	}
	return nil
}
