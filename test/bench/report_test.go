package bench

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"
)

// sectionOrder is the order of BENCHMARKS.md's sections, one per
// comparison (one Test function each).
var sectionOrder = []string{"cfssl", "kms", "coldstart", "growth"}

// report collects the sections the tests of this run wrote.
var report struct {
	mu       sync.Mutex
	sections map[string]string
}

// addSection records the markdown of one comparison under key (one of
// sectionOrder) for BENCHMARKS.md and prints it.
func addSection(key, md string) {
	fmt.Println(md)
	report.mu.Lock()
	defer report.mu.Unlock()
	if report.sections == nil {
		report.sections = map[string]string{}
	}
	report.sections[key] = md
}

// machineLines describes where and when a comparison ran.
func machineLines(load string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "- machine: %d CPUs, %s\n", runtime.NumCPU(), cpuModel())
	fmt.Fprintf(&b, "- go: %s\n", runtime.Version())
	fmt.Fprintf(&b, "- date: %s\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(&b, "- load average at start: %s\n", load)
	return b.String()
}

const reportHeader = `# Benchmarks: clusterkeys beside its peers

Written by ` + "`make bench`" + ` (test/bench); do not edit by hand. Each section is one
comparison, run on one machine with both sides measured in alternating rounds of the same run;
a run of some of the comparisons only (` + "`go test -run`" + `) rewrites its own sections and keeps the
others as they were, each with its own date.
`

// writeReport writes the sections of this run into path, keeping the
// sections of the file that this run did not measure.
func writeReport(path string) error {
	report.mu.Lock()
	defer report.mu.Unlock()
	if len(report.sections) == 0 {
		return nil
	}
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	var b strings.Builder
	b.WriteString(reportHeader)
	for _, key := range sectionOrder {
		md, ok := report.sections[key]
		if !ok {
			md, ok = oldSection(string(old), key)
		}
		if !ok {
			continue
		}
		fmt.Fprintf(&b, "\n<!-- bench:%s -->\n%s<!-- /bench:%s -->\n", key, strings.TrimRight(md, "\n")+"\n", key)
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// oldSection returns the section key of a BENCHMARKS.md written before.
func oldSection(doc, key string) (string, bool) {
	_, rest, ok := strings.Cut(doc, "<!-- bench:"+key+" -->\n")
	if !ok {
		return "", false
	}
	md, _, ok := strings.Cut(rest, "<!-- /bench:"+key+" -->")
	return md, ok
}
