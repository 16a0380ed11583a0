package pkcs11

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/clusterkeys/clusterkeys/internal/secretfile"
)

// Environment variables of the PKCS#11 settings (pkg/config binds the first
// three to flags; the PIN itself is only ever an environment variable).
const (
	EnvModule     = "CLUSTERKEYS_PKCS11_MODULE"
	EnvTokenLabel = "CLUSTERKEYS_PKCS11_TOKEN_LABEL"
	EnvPINFile    = "CLUSTERKEYS_PKCS11_PIN_FILE"
	EnvPIN        = "CLUSTERKEYS_PKCS11_PIN"
)

// maxPINFile bounds what ReadPINFile reads.
const maxPINFile = 4 << 10

// Config says which token to use. The PIN comes from a file or the
// environment, never from the command line; String never shows it.
type Config struct {
	// Module is the path of the PKCS#11 library, e.g.
	// /usr/lib/softhsm/libsofthsm2.so.
	Module string
	// TokenLabel selects the token (slot ids are not stable).
	TokenLabel string
	// PIN is the user PIN.
	PIN string
}

// String describes c without its PIN.
func (c Config) String() string {
	pin := "unset"
	if c.PIN != "" {
		pin = "set"
	}
	return fmt.Sprintf("pkcs11 module %q token %q (PIN %s)", c.Module, c.TokenLabel, pin)
}

// GoString is String, so that %#v does not print the PIN either.
func (c Config) GoString() string { return c.String() }

// LogValue is String, so that a Config given to slog (JSON handlers
// marshal structs field by field) never shows the PIN.
func (c Config) LogValue() slog.Value { return slog.StringValue(c.String()) }

// Validate reports what is missing from c.
func (c Config) Validate() error {
	var errs []error
	if c.Module == "" {
		errs = append(errs, fmt.Errorf("no PKCS#11 module: set %s or --pkcs11-module", EnvModule))
	}
	if c.TokenLabel == "" {
		errs = append(errs, fmt.Errorf("no token label: set %s or --pkcs11-token-label", EnvTokenLabel))
	}
	if c.PIN == "" {
		errs = append(errs, fmt.Errorf("no PIN: set %s (a file holding the PIN) or %s", EnvPINFile, EnvPIN))
	}
	return errors.Join(errs...)
}

// NewConfig returns the settings for module and label (already resolved from
// flags and CLUSTERKEYS_* variables by pkg/config) with the PIN read once:
// from pinFile (trimmed) when set, or else from CLUSTERKEYS_PKCS11_PIN.
// Missing settings are not an error here; Open validates. A PIN file that
// cannot be read, or is readable by others, is.
func NewConfig(module, label, pinFile string) (Config, error) {
	c := Config{Module: module, TokenLabel: label}
	if pinFile != "" {
		pin, err := ReadPINFile(pinFile)
		if err != nil {
			return Config{}, err
		}
		c.PIN = pin
		return c, nil
	}
	c.PIN = os.Getenv(EnvPIN)
	return c, nil
}

// ReadPINFile returns the PIN stored in path, without surrounding
// whitespace. An empty file, or one that group or others may read or
// write, is an error.
func ReadPINFile(path string) (string, error) {
	f, _, err := secretfile.Open(path, "PKCS#11 PIN file")
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxPINFile+1))
	if err != nil {
		return "", fmt.Errorf("read PKCS#11 PIN file %s: %w", path, err)
	}
	if len(b) > maxPINFile {
		return "", fmt.Errorf("PKCS#11 PIN file %s is larger than %d bytes", path, maxPINFile)
	}
	pin := strings.TrimSpace(string(b))
	if pin == "" {
		return "", fmt.Errorf("PKCS#11 PIN file %s is empty", path)
	}
	return pin, nil
}
