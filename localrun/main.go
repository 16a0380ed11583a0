// Command localrun runs clusterkeys on one machine: every function behind
// the gateway in one process on the embedded defaults (`localrun serve`),
// the real built Lambda bootstraps behind a local Lambda Runtime API
// (`localrun serve --exec`), or one Lambda event through one function
// (`localrun invoke FUNCTION --event FILE`, like `sam local invoke`).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	// Every store and custody backend, so that any --store and --keys works.
	_ "github.com/clusterkeys/clusterkeys/pkg/backends/all"
	"github.com/clusterkeys/clusterkeys/pkg/config"
	"github.com/clusterkeys/clusterkeys/pkg/functions"
)

var usage = `usage:
  localrun serve [flags]                      all functions on 127.0.0.1 (make run)
  localrun serve --exec --bin-dir DIR [flags] the built bootstraps behind a local Lambda Runtime API
  localrun invoke FUNCTION --event FILE       one Lambda HTTP API event through one function
functions: ` + strings.Join(functions.Names(), ", ") + `
run 'localrun serve --help' for flags; each flag is also CLUSTERKEYS_<FLAG>.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		var usageErr *config.UsageError
		if errors.As(err, &usageErr) {
			fmt.Fprintln(os.Stderr, usageErr)
			os.Exit(2)
		}
		fmt.Fprintln(os.Stderr, "localrun:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return &config.UsageError{Command: "localrun", Err: errors.New("missing command: serve or invoke")}
	}
	switch args[0] {
	case "serve":
		return serve(ctx, args[1:], stdout, stderr)
	case "invoke":
		return invoke(ctx, args[1:], stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	if strings.HasPrefix(args[0], "-") {
		return &config.UsageError{Command: "localrun", Err: fmt.Errorf("unknown flag: %s (flags follow the command: localrun serve %s)", args[0], args[0])}
	}
	return &config.UsageError{Command: "localrun", Err: fmt.Errorf("unknown command %q: want serve or invoke", args[0])}
}
