package kmsplugin

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc"
	kmsapi "k8s.io/kms/apis/v2"
	"k8s.io/kms/pkg/service"
)

// maxSocketPath is the longest unix socket path Linux accepts (sun_path
// holds 108 bytes including the terminating NUL).
const maxSocketPath = 107

// ParseListenAddress returns the socket path of a listen address of the form
// unix:///absolute/path.sock, the form kube-apiserver's EncryptionConfiguration
// uses for a KMS endpoint.
func ParseListenAddress(addr string) (string, error) {
	rest, ok := strings.CutPrefix(addr, "unix://")
	if !ok {
		return "", fmt.Errorf("listen address %q: want unix:///absolute/path.sock", addr)
	}
	switch {
	case rest == "" || !strings.HasPrefix(rest, "/"):
		return "", fmt.Errorf("listen address %q: the socket path must be absolute (unix:///path.sock)", addr)
	case strings.ContainsRune(rest, 0):
		return "", fmt.Errorf("listen address %q: NUL in socket path", addr)
	case strings.HasSuffix(rest, "/"):
		return "", fmt.Errorf("listen address %q: the socket path names a directory", addr)
	}
	p := filepath.Clean(rest)
	if p == "/" {
		return "", fmt.Errorf("listen address %q: the socket path names the root directory", addr)
	}
	if len(p) > maxSocketPath {
		return "", fmt.Errorf("listen address %q: socket path of %d bytes exceeds %d", addr, len(p), maxSocketPath)
	}
	return p, nil
}

// StreamWorkers is the number of goroutines that serve calls. Without
// them gRPC starts a goroutine for every call, whose stack then grows from
// its initial size while decoding the request (runtime.newstack and
// copystack were 12-15 % of a plugin's CPU under load); a worker keeps its
// grown stack from call to call. When every worker is busy (a slow custody)
// gRPC starts a goroutine for the call as before, so a call never waits for
// a worker. kube-apiserver calls a KMS plugin over one connection from a
// handful of goroutines.
const StreamWorkers = 16

// ServerOptions configures a Server.
type ServerOptions struct {
	// ConnectionTimeout bounds the connection handshake (5 s when zero).
	ConnectionTimeout time.Duration
	// Metrics, when set, counts accepted connections.
	Metrics *Metrics
	// Logger receives lifecycle events; discarded when nil.
	Logger *slog.Logger
}

// Server serves the KMS v2 gRPC API of a service.Service on a unix socket.
type Server struct {
	path string
	ln   net.Listener
	gs   *grpc.Server
	log  *slog.Logger

	metrics *Metrics
}

// Listen opens the unix socket addr names (unix:///path.sock) with mode
// 0600, creating its directory (0700) when missing. A socket left by a dead
// process is removed first; a socket another process still serves on, or a
// file that is not a socket, is an error.
func Listen(addr string, svc service.Service, opts ServerOptions) (*Server, error) {
	path, err := ParseListenAddress(addr)
	if err != nil {
		return nil, err
	}
	if opts.ConnectionTimeout == 0 {
		opts.ConnectionTimeout = 5 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create socket directory: %w", err)
	}
	if err := removeStaleSocket(path); err != nil {
		return nil, err
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	// net.Listen removes the socket on Close; do not let it race a new
	// process that has already replaced it.
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		os.Remove(path)
		return nil, fmt.Errorf("chmod 0600 %s: %w", path, err)
	}
	gs := grpc.NewServer(
		grpc.ConnectionTimeout(opts.ConnectionTimeout),
		grpc.MaxRecvMsgSize(64*1024),
		grpc.NumStreamWorkers(StreamWorkers),
	)
	kmsapi.RegisterKeyManagementServiceServer(gs, service.NewGRPCService(path, opts.ConnectionTimeout, svc))
	return &Server{path: path, ln: ln, gs: gs, log: opts.Logger, metrics: opts.Metrics}, nil
}

// removeStaleSocket removes path when it is a socket nobody accepts on.
func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("inspect %s: %w", path, err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("%s exists and is not a socket; refusing to replace it", path)
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("%s: another process is serving on this socket", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove stale socket %s: %w", path, err)
	}
	return nil
}

// Path returns the socket's path.
func (s *Server) Path() string { return s.path }

// Serve serves until Shutdown or Close; it then returns nil.
func (s *Server) Serve() error {
	s.log.Info("kms plugin serving", "socket", s.path)
	if err := s.gs.Serve(countingListener{Listener: s.ln, m: s.metrics}); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("serve %s: %w", s.path, err)
	}
	return nil
}

// Shutdown stops accepting connections, waits for pending calls until ctx
// ends (then cancels them) and removes the socket.
func (s *Server) Shutdown(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		s.gs.GracefulStop()
		close(done)
	}()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		s.gs.Stop()
		<-done
		err = fmt.Errorf("graceful shutdown: %w", ctx.Err())
	}
	s.removeSocket()
	return err
}

// Close stops at once, cancelling pending calls, and removes the socket.
func (s *Server) Close() {
	s.gs.Stop()
	s.removeSocket()
}

// removeSocket removes the socket file only while it is still the one this
// server created (a successor may have replaced it).
func (s *Server) removeSocket() {
	s.ln.Close()
	if fi, err := os.Lstat(s.path); err == nil && fi.Mode().Type() == fs.ModeSocket {
		c, err := net.DialTimeout("unix", s.path, 100*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		os.Remove(s.path)
	}
}
