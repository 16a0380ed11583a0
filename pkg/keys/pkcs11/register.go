package pkcs11

import (
	"context"
	"fmt"

	"github.com/clusterkeys/clusterkeys/pkg/keys"
)

// --keys pkcs11: keys in an HSM (SoftHSM2 in tests) through crypto11.
func init() {
	keys.Register("pkcs11", keys.Backend{
		Rank:  2,
		Flags: []string{"pkcs11-module", "pkcs11-token-label", "pkcs11-pin-file", "pkcs11-call-timeout"},
		// The PIN only by file or by the variable the operator already
		// set, never on a command line.
		Environ: []string{EnvPIN, "SOFTHSM2_CONF"},
		Open:    open,
	})
}

// open opens the token o.Config names. o.Config already holds the flags
// and their CLUSTERKEYS_* variables: the PIN file is read once, and a flag
// beats the environment.
func open(_ context.Context, o keys.OpenOptions) (keys.Custody, error) {
	cfg := o.Config
	pc, err := NewConfig(cfg.PKCS11Module, cfg.PKCS11TokenLabel, cfg.PKCS11PinFile)
	if err != nil {
		return nil, fmt.Errorf("pkcs11 custody: %w", err)
	}
	c, err := Open(pc, Options{Logger: o.Logger, Registerer: o.Registerer, CallTimeout: cfg.PKCS11CallTimeout})
	if err != nil {
		return nil, fmt.Errorf("pkcs11 custody: %w", err)
	}
	return c, nil
}
