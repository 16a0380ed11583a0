package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/clusterkeys/clusterkeys/pkg/api"
)

// TokenFile authenticates static bearer tokens read from a CSV file in
// kube-apiserver's --token-auth-file format: token,user,project,"role1,role2".
// Lines starting with # and blank lines are ignored.
type TokenFile struct {
	entries []tokenEntry
}

type tokenEntry struct {
	digest    [32]byte
	principal Principal
}

// maxTokenFile bounds what LoadTokenFile reads.
const maxTokenFile = 4 << 20

// LoadTokenFile reads a token file. Errors name the line, never the token.
func LoadTokenFile(path string) (*TokenFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open token file: %w", err)
	}
	defer f.Close()
	return ParseTokenFile(io.LimitReader(f, maxTokenFile))
}

// ParseTokenFile parses token file contents.
func ParseTokenFile(r io.Reader) (*TokenFile, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.Comment = '#'
	cr.TrimLeadingSpace = true
	tf := &TokenFile{}
	seen := map[[32]byte]bool{}
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			line := 0
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				line = pe.Line
			}
			return nil, fmt.Errorf("token file line %d: malformed CSV", line)
		}
		line, _ := cr.FieldPos(0)
		if len(rec) < 3 {
			return nil, fmt.Errorf("token file line %d: want token,user,project[,roles]", line)
		}
		token, user, project := strings.TrimSpace(rec[0]), strings.TrimSpace(rec[1]), strings.TrimSpace(rec[2])
		if len(token) < 16 {
			return nil, fmt.Errorf("token file line %d: token shorter than 16 characters", line)
		}
		if user == "" {
			return nil, fmt.Errorf("token file line %d: empty user", line)
		}
		var roles []string
		for _, f := range rec[3:] {
			for r := range strings.SplitSeq(f, ",") {
				if r = strings.TrimSpace(r); r != "" {
					roles = append(roles, r)
				}
			}
		}
		d := sha256.Sum256([]byte(token))
		if seen[d] {
			return nil, fmt.Errorf("token file line %d: duplicate token", line)
		}
		seen[d] = true
		tf.entries = append(tf.entries, tokenEntry{digest: d, principal: Principal{User: user, Project: project, Roles: roles}})
	}
	return tf, nil
}

// Authenticate looks token up. Every entry is compared, in constant time on
// SHA-256 digests, so timing says nothing about which token or prefix matched.
func (tf *TokenFile) Authenticate(_ context.Context, token string) (Principal, error) {
	d := sha256.Sum256([]byte(token))
	found := -1
	for i := range tf.entries {
		if subtle.ConstantTimeCompare(d[:], tf.entries[i].digest[:]) == 1 {
			found = i
		}
	}
	if found < 0 || token == "" {
		return Principal{}, fmt.Errorf("unknown token: %w", api.ErrUnauthenticated)
	}
	return tf.entries[found].principal, nil
}

// Len returns how many tokens the file holds.
func (tf *TokenFile) Len() int { return len(tf.entries) }

// EnsureTokenFile creates path with one random admin token when it does not
// exist (mode 0600) and returns that token; it returns "" when the file
// already existed.
func EnsureTokenFile(path string) (token string, err error) {
	if _, err := os.Stat(path); err == nil {
		return "", nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", fmt.Errorf("create token file directory: %w", err)
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	token = base64.RawURLEncoding.EncodeToString(b[:])
	content := "# clusterkeys static tokens: token,user,project,\"roles\"\n" +
		token + ",admin,admin,\"admin\"\n"
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("create token file: %w", err)
	}
	if _, err := f.WriteString(content); err != nil {
		f.Close()
		return "", fmt.Errorf("write token file: %w", err)
	}
	return token, f.Close()
}
