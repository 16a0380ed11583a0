package tlsserve

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
)

// ErrPlainHTTP is wrapped by CheckListen's refusal of plain HTTP on a
// non-loopback address.
var ErrPlainHTTP = errors.New("plain HTTP on a non-loopback address")

// IsLoopback reports whether the TCP address addr (host:port) only accepts
// connections from this machine: an IP in 127.0.0.0/8 or ::1, or the name
// localhost. An empty host (every interface) and any other name are not
// loopback.
func IsLoopback(addr string) (bool, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false, fmt.Errorf("--listen %q: %w", addr, err)
	}
	if strings.EqualFold(host, "localhost") {
		return true, nil
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return false, nil // a name other than localhost may resolve anywhere
	}
	return ip.Unmap().IsLoopback(), nil
}

// CheckListen applies the listen policy to addr: with TLS on anything goes;
// without, a loopback address is fine, and any other is refused (an error
// wrapping ErrPlainHTTP) unless insecureHTTP says so, which log records as a
// warning.
func CheckListen(addr string, tlsOn, insecureHTTP bool, log *slog.Logger) error {
	if tlsOn {
		return nil
	}
	loopback, err := IsLoopback(addr)
	if err != nil || loopback {
		return err
	}
	if !insecureHTTP {
		return fmt.Errorf("--listen %s: %w: bearer tokens, CSRs and unwrapped keys would cross the network in clear; "+
			"serve TLS with --tls-cert-file and --tls-private-key-file, listen on loopback (127.0.0.1), "+
			"or, behind a TLS-terminating proxy, say --insecure-http", addr, ErrPlainHTTP)
	}
	if log != nil {
		log.Warn("serving plain HTTP on a non-loopback address (--insecure-http): bearer tokens, CSRs and unwrapped keys cross the network in clear unless a proxy in front terminates TLS", "listen", addr)
	}
	return nil
}
