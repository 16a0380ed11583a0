package secretfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestOpen(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, mode os.FileMode) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("secret"), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name, path, wantErr string
	}{
		{"a 0600 file opens", write("ok", 0o600), ""},
		{"a 0400 file opens", write("ro", 0o400), ""},
		{"a file the group may read is refused", write("group", 0o640), "has mode 0640"},
		{"a file others may write is refused", write("others", 0o602), "has mode 0602"},
		{"a directory is refused", dir, "is not a regular file"},
		{"a missing file says what it is", filepath.Join(dir, "missing"), "open token file: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, _, err := Open(tt.path, "token file")
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				f.Close()
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || strings.Contains(err.Error(), "secret") {
				t.Fatalf("err = %v, want one containing %q and not the content", err, tt.wantErr)
			}
		})
	}
}
