// Package secretfile opens the files that hold a secret (token file,
// master key, PKCS#11 PIN, store DSN): it refuses one that is not a
// regular file or that group or others may read or write, as ssh does for
// a private key. A secret others can read is a secret already given away.
package secretfile

import (
	"fmt"
	"io/fs"
	"os"
)

// Open opens path for reading and checks it with CheckMode. what names the
// file in errors ("token file"); they name path, never what it holds.
func Open(path, what string) (*os.File, fs.FileInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("open %s: %w", what, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("stat %s %s: %w", what, path, err)
	}
	if err := CheckMode(fi, what, path); err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, fi, nil
}

// CheckMode refuses fi, the mode of the file path, unless it is a regular
// file that neither group nor others may read or write. what names the
// file in errors.
func CheckMode(fi fs.FileInfo, what, path string) error {
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s %s is not a regular file", what, path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("%s %s has mode %#o: it must not be readable or writable by group or others (chmod 600 it)", what, path, perm)
	}
	return nil
}
