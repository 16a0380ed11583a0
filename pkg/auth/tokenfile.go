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

	"github.com/clusterkeys/clusterkeys/internal/secretfile"
	"github.com/clusterkeys/clusterkeys/pkg/api"
)

// TokenFile authenticates static bearer tokens read from a CSV file in
// kube-apiserver's --token-auth-file format: token,user,project,"role1,role2".
// Lines starting with # and blank lines are ignored.
//
// A line with the member or reader role must name a project: a principal
// with no project owns nothing (package doc), so such a line would give a
// token that can do nothing, or worse, a file written for an older release
// that relied on the empty project. Projects beginning with ReservedPrefix
// belong to clusterkeys itself (the KMS shim's key project) and no line may
// carry one.
type TokenFile struct {
	entries []tokenEntry
}

type tokenEntry struct {
	digest    [32]byte
	principal Principal
}

// ReservedPrefix begins the projects that belong to clusterkeys itself,
// such as the KMS shim's default key project: no token-file line may carry
// one, and Keystone project ids never contain ':'.
const ReservedPrefix = "clusterkeys:"

// maxTokenFile bounds what LoadTokenFile reads.
const maxTokenFile = 4 << 20

// The reasons a token file line is refused. They are constant text: an
// error names the line, never anything read from it, so no token can leak
// into a log through a misplaced field.
const (
	errMalformed       = "malformed CSV"
	errFields          = "want token,user,project[,roles]"
	errShortToken      = "token shorter than 16 characters"
	errEmptyUser       = "empty user"
	errNoProject       = "the member and reader roles need a project (a principal with no project owns nothing)"
	errReservedProject = "projects beginning with " + ReservedPrefix + " are reserved for clusterkeys itself"
	errDuplicate       = "duplicate token"
)

// LoadTokenFile reads a token file. It refuses a file that is not a
// regular file or that group or others may read or write, as for the master
// key and the PKCS#11 PIN file. Errors name the line, never the token.
func LoadTokenFile(path string) (*TokenFile, error) {
	f, _, err := secretfile.Open(path, "token file")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ParseTokenFile(io.LimitReader(f, maxTokenFile))
}

// record is one parsed token file line.
type record struct {
	token     string
	principal Principal
}

func lineError(line int, reason string) error {
	return fmt.Errorf("token file line %d: %s", line, reason)
}

// parseRecords parses and checks token file contents.
func parseRecords(r io.Reader) ([]record, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.Comment = '#'
	cr.TrimLeadingSpace = true
	var out []record
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
			return nil, lineError(line, errMalformed)
		}
		line, _ := cr.FieldPos(0)
		if len(rec) < 3 {
			return nil, lineError(line, errFields)
		}
		token, user, project := strings.TrimSpace(rec[0]), strings.TrimSpace(rec[1]), strings.TrimSpace(rec[2])
		if len(token) < 16 {
			return nil, lineError(line, errShortToken)
		}
		if user == "" {
			return nil, lineError(line, errEmptyUser)
		}
		var roles []string
		for _, f := range rec[3:] {
			for r := range strings.SplitSeq(f, ",") {
				if r = strings.TrimSpace(r); r != "" {
					roles = append(roles, r)
				}
			}
		}
		p := Principal{User: user, Project: project, Roles: roles}
		if project == "" && p.hasAny(RoleMember, RoleReader) {
			return nil, lineError(line, errNoProject)
		}
		if strings.HasPrefix(project, ReservedPrefix) {
			return nil, lineError(line, errReservedProject)
		}
		d := sha256.Sum256([]byte(token))
		if seen[d] {
			return nil, lineError(line, errDuplicate)
		}
		seen[d] = true
		out = append(out, record{token: token, principal: p})
	}
	return out, nil
}

// ParseTokenFile parses token file contents.
func ParseTokenFile(r io.Reader) (*TokenFile, error) {
	recs, err := parseRecords(r)
	if err != nil {
		return nil, err
	}
	tf := &TokenFile{entries: make([]tokenEntry, 0, len(recs))}
	for _, rec := range recs {
		tf.entries = append(tf.entries, tokenEntry{digest: sha256.Sum256([]byte(rec.token)), principal: rec.principal})
	}
	return tf, nil
}

// formatLine returns the token file line for token and p, every field
// quoted so that any value the parser accepts reads back the same.
func formatLine(token string, p Principal) string {
	q := func(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }
	return q(token) + "," + q(p.User) + "," + q(p.Project) + "," + q(strings.Join(p.Roles, ",")) + "\n"
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
	content := "# clusterkeys static tokens: token,user,project,\"roles\" (keep this file mode 0600)\n" +
		formatLine(token, Principal{User: "admin", Project: "admin", Roles: []string{RoleAdmin}})
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
