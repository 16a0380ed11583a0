package openapi

import (
	"bytes"
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// doc is the part of an OpenAPI document these tests read.
type doc struct {
	OpenAPI    string                                `json:"openapi"`
	Paths      map[string]map[string]json.RawMessage `json:"paths"`
	Components struct {
		Schemas map[string]struct {
			Enum []string `json:"enum"`
		} `json:"schemas"`
	} `json:"components"`
}

var methods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

func load(t *testing.T) (doc, any) {
	t.Helper()
	var d doc
	if err := json.Unmarshal(Document(), &d); err != nil {
		t.Fatalf("the document is not JSON: %v", err)
	}
	var raw any
	if err := json.Unmarshal(Document(), &raw); err != nil {
		t.Fatal(err)
	}
	return d, raw
}

// TestDocumentIsWellFormed checks what a JSON parse alone does not: the
// version, that every $ref points into the document, that operation ids
// are unique and that every path template parameter is declared. Full
// validation against the OpenAPI 3.1 schema runs in test/e2e, whose module
// may link an OpenAPI library.
func TestDocumentIsWellFormed(t *testing.T) {
	d, raw := load(t)
	if d.OpenAPI != "3.1.0" {
		t.Errorf("openapi = %q, want 3.1.0", d.OpenAPI)
	}
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch v := v.(type) {
		case map[string]any:
			if r, ok := v["$ref"].(string); ok {
				if resolve(raw, r) == nil {
					t.Errorf("%s: $ref %q does not resolve", path, r)
				}
			}
			for k, c := range v {
				walk(path+"/"+k, c)
			}
		case []any:
			for i, c := range v {
				walk(path+"/"+strconv.Itoa(i), c)
			}
		}
	}
	walk("#", raw)

	ids := map[string]string{}
	param := regexp.MustCompile(`\{([^}]+)\}`)
	for p, item := range d.Paths {
		declared := pathParams(t, raw, item["parameters"])
		for _, m := range methods {
			body, ok := item[m]
			if !ok {
				continue
			}
			var o struct {
				OperationID string                     `json:"operationId"`
				Parameters  json.RawMessage            `json:"parameters"`
				Responses   map[string]json.RawMessage `json:"responses"`
			}
			if err := json.Unmarshal(body, &o); err != nil {
				t.Fatalf("%s %s: %v", m, p, err)
			}
			where := strings.ToUpper(m) + " " + p
			if o.OperationID == "" {
				t.Errorf("%s has no operationId", where)
			} else if other, dup := ids[o.OperationID]; dup {
				t.Errorf("%s and %s share operationId %q", where, other, o.OperationID)
			}
			ids[o.OperationID] = where
			if len(o.Responses) == 0 {
				t.Errorf("%s has no responses", where)
			}
			all := append(slices.Clone(declared), pathParams(t, raw, o.Parameters)...)
			for _, m := range param.FindAllStringSubmatch(p, -1) {
				if !slices.Contains(all, m[1]) {
					t.Errorf("%s: path parameter %q is not declared", where, m[1])
				}
			}
		}
	}
}

// pathParams returns the names of the path parameters of a parameters list.
func pathParams(t *testing.T, raw any, list json.RawMessage) []string {
	t.Helper()
	if list == nil {
		return nil
	}
	var ps []map[string]any
	if err := json.Unmarshal(list, &ps); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range ps {
		if r, ok := p["$ref"].(string); ok {
			p, _ = resolve(raw, r).(map[string]any)
		}
		if p["in"] == "path" {
			names = append(names, p["name"].(string))
		}
	}
	return names
}

// resolve follows a local JSON pointer reference, or returns nil.
func resolve(raw any, ref string) any {
	rest, ok := strings.CutPrefix(ref, "#/")
	if !ok {
		return nil
	}
	v := raw
	for _, tok := range strings.Split(rest, "/") {
		tok = strings.NewReplacer("~1", "/", "~0", "~").Replace(tok)
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		if v, ok = m[tok]; !ok {
			return nil
		}
	}
	return v
}

// TestCodeEnumsAreTheCodeConstants keeps the document's code enums equal
// to the Code constants of the source: a new code added in Go and missing
// in the document fails here. pkg/tlsbundle's codes are the validation
// report's issue codes; every other package's are problem codes, plus the
// two tlsbundle codes that are also sent as problems.
func TestCodeEnumsAreTheCodeConstants(t *testing.T) {
	d, _ := load(t)
	problem, issues := codeConstants(t, moduleRoot(t))
	problem = append(problem, "input_too_large", "container_ref_unsupported")
	enum := func(name string) []string {
		s, ok := d.Components.Schemas[name]
		if !ok {
			t.Fatalf("no schema %s", name)
		}
		return s.Enum
	}
	check := func(what string, doc, src []string) {
		t.Helper()
		doc, src = sortedSet(doc), sortedSet(src)
		for _, c := range src {
			if !slices.Contains(doc, c) {
				t.Errorf("%s: code %q is a constant in the source but not in the document", what, c)
			}
		}
		for _, c := range doc {
			if !slices.Contains(src, c) {
				t.Errorf("%s: code %q is in the document but no constant in the source", what, c)
			}
		}
	}
	check("ProblemCode", enum("ProblemCode"), problem)
	errs, warns := enum("IssueErrorCode"), enum("IssueWarningCode")
	for _, c := range errs {
		if slices.Contains(warns, c) {
			t.Errorf("issue code %q is both an error and a warning", c)
		}
	}
	check("IssueErrorCode+IssueWarningCode", append(errs, warns...), issues)
}

func sortedSet(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return slices.Compact(s)
}

// moduleRoot returns the directory of the main module's go.mod.
func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && bytes.HasPrefix(b, []byte("module github.com/clusterkeys/clusterkeys\n")) {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod of github.com/clusterkeys/clusterkeys above the test")
		}
		dir = parent
	}
}

// codeConstants returns the values of the string constants named Code…
// in the module's non-test Go files: those of pkg/tlsbundle apart.
func codeConstants(t *testing.T, root string) (problem, issues []string) {
	t.Helper()
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if e.IsDir() {
			if rel == "test" || (rel != "." && strings.HasPrefix(e.Name(), ".")) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		for _, decl := range f.Decls {
			g, ok := decl.(*ast.GenDecl)
			if !ok || g.Tok != token.CONST {
				continue
			}
			for _, spec := range g.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, name := range vs.Names {
					if !strings.HasPrefix(name.Name, "Code") || i >= len(vs.Values) {
						continue
					}
					lit, ok := vs.Values[i].(*ast.BasicLit)
					if !ok || lit.Kind != token.STRING {
						continue
					}
					v, err := strconv.Unquote(lit.Value)
					if err != nil {
						return err
					}
					if filepath.ToSlash(filepath.Dir(rel)) == "pkg/tlsbundle" {
						issues = append(issues, v)
					} else {
						problem = append(problem, v)
					}
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return problem, issues
}

func TestRouteServesTheDocument(t *testing.T) {
	rt := Route()
	if !rt.Public || rt.Pattern != "GET /openapi.json" {
		t.Fatalf("route = %+v, want public GET /openapi.json", rt)
	}
	rec := httptest.NewRecorder()
	if err := rt.Handler(rec, httptest.NewRequest(http.MethodGet, Path, nil)); err != nil {
		t.Fatal(err)
	}
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" {
		t.Errorf("status %d, Content-Type %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	if !bytes.Equal(rec.Body.Bytes(), Document()) {
		t.Error("the body is not the document")
	}
}
