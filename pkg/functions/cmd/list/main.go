// Command list prints the names of the deployable functions of
// pkg/functions, one a line, for the Makefile. With -cgo it prints only
// those that need cgo, with -no-cgo those that do not.
package main

import (
	"flag"
	"fmt"

	"github.com/clusterkeys/clusterkeys/pkg/functions"
)

func main() {
	cgo := flag.Bool("cgo", false, "only the functions that need cgo")
	noCgo := flag.Bool("no-cgo", false, "only the functions that do not need cgo")
	flag.Parse()
	for _, f := range functions.All {
		if (*cgo && !f.Cgo) || (*noCgo && f.Cgo) {
			continue
		}
		fmt.Println(f.Name)
	}
}
