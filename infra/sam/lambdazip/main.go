// Command lambdazip writes a Lambda deployment package: a zip holding one
// file, an executable named bootstrap at its root, with a fixed modification
// time and mode, so that the same binary always gives the same zip bytes
// (`make package` builds the binary reproducibly, then runs this).
//
//	go run ./infra/sam/lambdazip -o bin/package/signcsr.zip bin/package/signcsr/bootstrap
//
// It prints the zip's path and size.
package main

import (
	"archive/zip"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// Entry is the name of the one file in the zip: what the provided.al2023
// runtime executes.
const Entry = "bootstrap"

// Mode is the entry's mode: executable by the Lambda runtime's user.
const Mode = 0o755

// ModTime is every entry's modification time: the earliest a zip (DOS) time
// can say, so that it says nothing about when the package was built.
var ModTime = time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)

func main() {
	out := flag.String("o", "", "zip file to write")
	flag.Usage = func() {
		fmt.Fprintln(flag.CommandLine.Output(), "usage: lambdazip -o FUNCTION.zip BOOTSTRAP")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *out == "" || flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	size, err := write(*out, flag.Arg(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, "lambdazip:", err)
		os.Exit(1)
	}
	fmt.Printf("%s\t%d bytes (%.1f MiB)\n", *out, size, float64(size)/(1<<20))
}

// write zips the binary bootstrap into out and returns the zip's size.
func write(out, bootstrap string) (int64, error) {
	bin, err := os.ReadFile(bootstrap)
	if err != nil {
		return 0, fmt.Errorf("read bootstrap: %w", err)
	}
	b, err := Zip(bin)
	if err != nil {
		return 0, fmt.Errorf("zip %s: %w", bootstrap, err)
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return 0, fmt.Errorf("create output dir: %w", err)
	}
	// Written beside, then renamed: a failed run leaves no truncated zip.
	tmp := out + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return 0, fmt.Errorf("write zip: %w", err)
	}
	if err := os.Rename(tmp, out); err != nil {
		return 0, errors.Join(fmt.Errorf("write zip: %w", err), os.Remove(tmp))
	}
	return int64(len(b)), nil
}

// Zip returns the deployment package of the executable bin: one deflated
// entry named Entry, with mode Mode and time ModTime, and nothing else (no
// directory entry, no comment).
func Zip(bin []byte) ([]byte, error) {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	h := &zip.FileHeader{Name: Entry, Method: zip.Deflate, Modified: ModTime}
	h.SetMode(Mode) // also marks the entry as made on Unix, so the mode is read back
	w, err := zw.CreateHeader(h)
	if err != nil {
		return nil, err
	}
	if _, err := io.Copy(w, bytes.NewReader(bin)); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
