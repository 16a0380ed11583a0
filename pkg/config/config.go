// Package config holds the settings shared by localrun, the Lambda functions
// and the KMS shim, and reads them from pflag flags and CLUSTERKEYS_<FLAG>
// environment variables (a flag given on the command line wins over the
// environment; Lambda functions read the environment only).
//
// Secrets (the PKCS#11 PIN, Barbican credentials) are never flags: they come
// from files or the environment, so they do not show in ps output.
package config

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

// EnvPrefix prefixes every environment variable that sets a flag.
const EnvPrefix = "CLUSTERKEYS_"

// Config is the settings of a clusterkeys process.
type Config struct {
	// Listen is the address localrun serves on.
	Listen string
	// StateDir holds the SQLite file, the software master key and the token
	// file by default.
	StateDir string
	// TokenAuthFile is the static token file (kube-apiserver CSV format).
	TokenAuthFile string
	// Auth is how requests are authenticated: "token-file" or "keystone".
	Auth string
	// Keys is the key custody backend: "software", "pkcs11" or "barbican".
	Keys string
	// Store is the metadata store: "sqlite:PATH" (PostgreSQL is planned,
	// not built in yet).
	Store string
	// MasterKeyFile is software custody's master key.
	MasterKeyFile string
	// PKCS11Module, PKCS11TokenLabel and PKCS11PinFile configure pkcs11
	// custody; the PIN may also come from CLUSTERKEYS_PKCS11_PIN.
	PKCS11Module     string
	PKCS11TokenLabel string
	PKCS11PinFile    string
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
	// AdminProject is the Keystone project whose admins are clusterkeys'
	// admins (besides system-scoped admins): id, name in the Default domain,
	// or DOMAIN/NAME. An admin of any other project is that project's only.
	AdminProject string
	// LogLevel is debug, info, warn or error; LogFormat is text or json.
	LogLevel  string
	LogFormat string
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
	}
}

// BindFlags registers c's fields as flags on fs, with c's values as defaults.
func (c *Config) BindFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.Listen, "listen", c.Listen, "address to serve HTTP on")
	fs.StringVar(&c.StateDir, "state-dir", c.StateDir, "directory for the SQLite file, master key and token file")
	fs.StringVar(&c.TokenAuthFile, "token-auth-file", c.TokenAuthFile, "static token file, CSV token,user,project,\"roles\" (default <state-dir>/tokens.csv)")
	fs.StringVar(&c.Auth, "auth", c.Auth, "authentication: token-file or keystone")
	fs.StringVar(&c.Keys, "keys", c.Keys, "key custody: software, pkcs11 or barbican")
	fs.StringVar(&c.Store, "store", c.Store, "metadata store: sqlite:PATH (default sqlite:<state-dir>/clusterkeys.db)")
	fs.StringVar(&c.MasterKeyFile, "master-key-file", c.MasterKeyFile, "software custody master key, 32 bytes, mode 0600 (default <state-dir>/master.key)")
	fs.StringVar(&c.PKCS11Module, "pkcs11-module", c.PKCS11Module, "path of the PKCS#11 library (e.g. libsofthsm2.so)")
	fs.StringVar(&c.PKCS11TokenLabel, "pkcs11-token-label", c.PKCS11TokenLabel, "label of the PKCS#11 token")
	fs.StringVar(&c.PKCS11PinFile, "pkcs11-pin-file", c.PKCS11PinFile, "file holding the PKCS#11 user PIN (or set CLUSTERKEYS_PKCS11_PIN)")
	fs.StringVar(&c.OSCloud, "os-cloud", c.OSCloud, "clouds.yaml entry with the service credentials for Barbican and Keystone (default: OS_* variables)")
	fs.StringVar(&c.BarbicanEndpoint, "barbican-endpoint", c.BarbicanEndpoint, "Barbican endpoint, overriding the Keystone catalog (e.g. http://127.0.0.1:9311)")
	fs.StringVar(&c.BarbicanProject, "barbican-project", c.BarbicanProject, "with --barbican-endpoint and no Keystone: the X-Project-Id to use")
	fs.DurationVar(&c.AuthCacheTTL, "auth-cache-ttl", c.AuthCacheTTL, "with --auth keystone: how long a token validation is reused (a revoked token works at most this long)")
	fs.StringVar(&c.AdminProject, "admin-project", c.AdminProject, "with --auth keystone: the project whose admin role makes a clusterkeys admin (id, name in the Default domain, or DOMAIN/NAME; empty: system-scoped admins only); an admin of another project is that project's only")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "log level: debug, info, warn, error")
	fs.StringVar(&c.LogFormat, "log-format", c.LogFormat, "log format: text or json")
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
	if c.Store == "" {
		c.Store = "sqlite:" + filepath.Join(c.StateDir, "clusterkeys.db")
	}
	if c.MasterKeyFile == "" {
		c.MasterKeyFile = filepath.Join(c.StateDir, "master.key")
	}
	switch c.Keys {
	case "software", "pkcs11", "barbican":
	default:
		return c, fmt.Errorf("--keys %q: want software, pkcs11 or barbican", c.Keys)
	}
	switch c.Auth {
	case "token-file", "keystone":
	default:
		return c, fmt.Errorf("--auth %q: want token-file or keystone", c.Auth)
	}
	switch {
	case strings.HasPrefix(c.Store, "sqlite:"):
	case strings.HasPrefix(c.Store, "postgres://"), strings.HasPrefix(c.Store, "postgresql://"):
		// Said at start-up, before anything opens; the value may hold a
		// password, so it is not repeated.
		return c, errors.New("--store postgres://…: PostgreSQL is not built in yet; use sqlite:PATH")
	default:
		scheme, _, _ := strings.Cut(c.Store, ":") // the rest may hold a password
		if len(scheme) > 16 {
			scheme = scheme[:16] + "…"
		}
		return c, fmt.Errorf("--store %q…: want sqlite:PATH", scheme)
	}
	return c, nil
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
