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
	"syscall"
)

const usage = `usage:
  localrun serve [flags]                      all functions on 127.0.0.1 (make run)
  localrun serve --exec --bin-dir DIR [flags] the built bootstraps behind a local Lambda Runtime API
  localrun invoke FUNCTION --event FILE       one Lambda HTTP API event through one function
functions: signcsr, rekeycluster, keywrap, validatebundle
run 'localrun serve --help' for flags; each flag is also CLUSTERKEYS_<FLAG>.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, errUsage) {
			fmt.Fprintln(os.Stderr, "localrun:", err)
		}
		os.Exit(1)
	}
}

var errUsage = errors.New("usage")

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errUsage
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
	fmt.Fprintf(stderr, "localrun: unknown command %q\n%s", args[0], usage)
	return errUsage
}
