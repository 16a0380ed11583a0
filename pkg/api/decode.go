package api

import (
	"bytes"
	"cmp"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"
	"unicode"
)

// DecodeJSON reads r's body into v strictly (see DecodeJSONBytes): a body
// must come with a JSON content type (415 unsupported_media_type
// otherwise, a missing Content-Type included), unknown fields are refused
// (unknown_field), so are repeated fields (duplicate_field) and trailing
// data, and a body over the route's limit (enforced by the gateway with
// http.MaxBytesReader) gives 413 body_too_large. An empty body decodes as
// {} when allowEmpty, whatever its Content-Type.
func DecodeJSON(r *http.Request, v any, allowEmpty bool) error {
	body, err := readBody(r)
	if err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			return New(http.StatusRequestEntityTooLarge, CodeBodyTooLarge,
				fmt.Sprintf("request body exceeds %d bytes", mb.Limit))
		}
		return New(http.StatusBadRequest, CodeMalformedJSON, "cannot read request body").Wrap(err)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		if allowEmpty {
			return nil
		}
		return New(http.StatusBadRequest, CodeMalformedJSON, "request body is empty; a JSON object is required")
	}
	if err := CheckJSONContentType(r); err != nil {
		return err
	}
	return DecodeJSONBytes(body, v)
}

// maxBodyHint bounds the buffer readBody allocates ahead on the word of a
// Content-Length header.
const maxBodyHint = 1 << 20

// readBody reads r's body as io.ReadAll does, into a buffer sized by its
// Content-Length (bounded by maxBodyHint) instead of one grown from 512
// bytes: one allocation for a body that says its length. The length is
// only a hint; what limits the body is the reader (the gateway's
// http.MaxBytesReader).
func readBody(r *http.Request) ([]byte, error) {
	n := r.ContentLength
	if n <= 0 || n > maxBodyHint {
		return io.ReadAll(r.Body)
	}
	// One byte more than announced, so that the read that meets EOF finds
	// room and a body longer than announced does not grow the buffer at
	// once.
	b := make([]byte, 0, n+1)
	for {
		m, err := r.Body.Read(b[len(b):cap(b)])
		b = b[:len(b)+m]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)] // io.ReadAll's growth
		}
	}
}

// CheckJSONContentType refuses a request whose Content-Type is missing or is
// not JSON (application/json or any +json type): 415
// unsupported_media_type. Note that curl -d (or --data-binary) without
// -H 'Content-Type: application/json' sends
// application/x-www-form-urlencoded, which is refused; curl --json sets the
// JSON type itself, and so does python-magnumclient on every request with
// a body.
func CheckJSONContentType(r *http.Request) error {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return New(http.StatusUnsupportedMediaType, CodeUnsupportedMediaType,
			"a request body needs Content-Type: application/json")
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || !(mt == "application/json" || strings.HasSuffix(mt, "+json")) {
		return New(http.StatusUnsupportedMediaType, CodeUnsupportedMediaType,
			"Content-Type must be application/json")
	}
	return nil
}

// DecodeJSONBytes decodes one JSON object from body into v, strictly: every
// object key must be, exactly (case-sensitively), the JSON name of a field of
// the struct it decodes into, else 400 unknown_field; a key may appear only
// once in an object, else 400 duplicate_field. The rule applies to nested
// structs, slices and arrays of structs and pointers to structs; values
// decoded into maps, interfaces or types with their own UnmarshalJSON or
// UnmarshalText (json.RawMessage, time.Time) are not checked. Syntax errors
// take precedence over these errors, which take precedence over type errors.
func DecodeJSONBytes(body []byte, v any) error {
	t := reflect.TypeOf(v)
	if t == nil || t.Kind() != reflect.Pointer {
		return decodeStrictly(body, v)
	}
	if strictScanned(body, t) {
		switch {
		case strictCovers(t):
			// The common case, in one decode: json.Unmarshal checks the
			// whole body's syntax before it decodes anything, and the scan
			// found no key to refuse anywhere a struct is filled.
			err := json.Unmarshal(body, v)
			var syn *json.SyntaxError
			if !errors.As(err, &syn) {
				if err != nil {
					return jsonError(err)
				}
				return nil
			}
			// A syntax error: the long way below reports it, as it
			// always has.
		case json.Valid(body):
			return decodeStrictly(body, v)
		}
	}
	if err := walkStrict(body, t); err != nil {
		return err
	}
	return decodeStrictly(body, v)
}

// decodeStrictly decodes the first JSON value of body into v with
// DisallowUnknownFields (which also reaches structs inside maps, where the
// strict walk does not look) and refuses anything after it.
func decodeStrictly(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return New(http.StatusBadRequest, CodeMalformedJSON, "unexpected data after the JSON object")
	}
	return nil
}

// walkStrict walks the first JSON value of body with Decoder.Token, guided
// by the type t it will be decoded into, and refuses keys that are not a
// field's exact JSON name and keys repeated in one object. The walk goes to
// the end of the value even after a refusal, so that a syntax error later in
// the value is what is reported. Everything else (types, trailing data) is
// left to the normal decode. It is the long way: DecodeJSONBytes takes it
// only when strictScanned cannot say the body is clean.
func walkStrict(body []byte, t reflect.Type) error {
	w := strictWalker{dec: json.NewDecoder(bytes.NewReader(body))}
	// Numbers as json.Number: the walk must not fail on a number that does
	// not fit a float64, which only the target type can judge.
	w.dec.UseNumber()
	if err := w.value(t); err != nil {
		return jsonError(err)
	}
	if w.err != nil {
		return w.err
	}
	return nil
}

// strictScanned is the common case of walkStrict, without its cost: body
// is walked byte by byte (no tokens, no allocations), guided by t as
// strictWalker is. On a valid body it returns true only when the walk meets
// nothing strictWalker would refuse and nothing but white space follows
// the value; on anything else (an unknown or repeated key, a key with an
// escape or a non-ASCII byte, which strictWalker compares decoded, deep
// nesting, a struct of more than 64 fields, trailing data) it returns false
// and the long way says exactly what is wrong. The walk trusts the body to
// be valid JSON: on an invalid one its answer means nothing, so a caller
// that takes its true must check the syntax itself, as json.Unmarshal does
// before it decodes anything.
func strictScanned(body []byte, t reflect.Type) (clean bool) {
	// Should the walk ever step out of the body (it does not check the
	// grammar), the long way answers. Every step moves forward, so the
	// walk ends on any body.
	defer func() {
		if recover() != nil {
			clean = false
		}
	}()
	s := strictScan{b: body}
	s.space()
	if !s.value(t, 0) {
		return false
	}
	s.space()
	return s.i == len(s.b)
}

// strictScan walks a body byte by byte, trusting it to be valid JSON
// (strictScanned).
type strictScan struct {
	b []byte
	i int
}

// maxCleanDepth bounds the nesting strictScanned walks.
const maxCleanDepth = 64

func (s *strictScan) space() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// value consumes the value at s.i, checking it against t as
// strictWalker.value does; false means "take the long way".
func (s *strictScan) value(t reflect.Type, depth int) bool {
	if depth > maxCleanDepth {
		return false
	}
	t, walk := strictTarget(t)
	switch {
	case !walk:
	case s.b[s.i] == '{' && t.Kind() == reflect.Struct:
		return s.object(t, depth)
	case s.b[s.i] == '[' && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array):
		s.i++
		s.space()
		if s.b[s.i] == ']' {
			s.i++
			return true
		}
		for {
			if !s.value(t.Elem(), depth+1) {
				return false
			}
			s.space()
			if s.b[s.i] == ']' {
				s.i++
				return true
			}
			s.i++ // ','
			s.space()
		}
	}
	// A value strictWalker does not look into, a scalar, or a type
	// mismatch the decoder reports: nothing to refuse.
	s.skip()
	return true
}

// object consumes the object at s.i ('{') for the struct type t.
func (s *strictScan) object(t reflect.Type, depth int) bool {
	info := strictFieldsOf(t)
	if len(info.fields) > 64 {
		return false
	}
	var seen uint64
	s.i++
	s.space()
	if s.b[s.i] == '}' {
		s.i++
		return true
	}
	for {
		start := s.i + 1 // after the key's '"'
		end := start
		for s.b[end] != '"' {
			if c := s.b[end]; c == '\\' || c >= 0x80 {
				return false
			}
			end++
		}
		f, known := info.byName[string(s.b[start:end])]
		if !known || seen&(1<<f) != 0 {
			return false
		}
		seen |= 1 << f
		s.i = end + 1
		s.space()
		s.i++ // ':'
		s.space()
		if !s.value(info.fields[f].typ, depth+1) {
			return false
		}
		s.space()
		if s.b[s.i] == '}' {
			s.i++
			return true
		}
		s.i++ // ','
		s.space()
	}
}

// skipString consumes the string at s.i, finding its closing quote with
// bytes.IndexByte (PEM text makes long strings): a quote is the end when
// an even number of backslashes precedes it.
func (s *strictScan) skipString() {
	i := s.i + 1
	for {
		j := bytes.IndexByte(s.b[i:], '"')
		if j < 0 {
			panic("unterminated string") // an invalid body; see strictScanned
		}
		i += j
		escapes := 0
		for k := i - 1; s.b[k] == '\\'; k-- {
			escapes++
		}
		if escapes%2 == 0 {
			s.i = i + 1
			return
		}
		i++
	}
}

// skip consumes the value at s.i.
func (s *strictScan) skip() {
	depth := 0
	for {
		switch c := s.b[s.i]; {
		case c == '"':
			s.skipString()
		case c == '{' || c == '[':
			depth++
			s.i++
		case c == '}' || c == ']':
			depth--
			s.i++
		case depth == 0:
			// A number or literal: up to the next delimiter.
			for s.i < len(s.b) && !strings.ContainsRune(",}] \t\n\r", rune(s.b[s.i])) {
				s.i++
			}
			return
		default:
			s.i++
		}
		if depth == 0 {
			return
		}
	}
}

type strictWalker struct {
	dec  *json.Decoder
	path []string // JSON names from the root to the current value
	err  *Error   // the first refusal
}

func (w *strictWalker) refuse(e *Error) {
	if w.err == nil {
		w.err = e
	}
}

func (w *strictWalker) fieldPath(key string) string {
	if len(w.path) == 0 {
		return key
	}
	return strings.Join(w.path, ".") + "." + key
}

// value consumes the next JSON value, checking it against t. It returns
// only syntax and read errors; refusals go to w.err.
func (w *strictWalker) value(t reflect.Type) error {
	t, walk := strictTarget(t)
	if !walk {
		return w.dec.Decode(new(skipValue))
	}
	tok, err := w.dec.Token()
	if err != nil {
		return err
	}
	d, ok := tok.(json.Delim)
	if !ok {
		// A scalar (or null) where t wants an object or array: the
		// decoder reports the mismatch, if it is one.
		return nil
	}
	switch {
	case d == '{' && t.Kind() == reflect.Struct:
		return w.object(t)
	case d == '[' && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array):
		for w.dec.More() {
			if err := w.value(t.Elem()); err != nil {
				return err
			}
		}
		_, err := w.dec.Token() // ']'
		return err
	}
	// A type mismatch, left to the decoder: skip the rest of the
	// container.
	for depth := 1; depth > 0; {
		tok, err := w.dec.Token()
		if err != nil {
			return err
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			depth++
		case json.Delim('}'), json.Delim(']'):
			depth--
		}
	}
	return nil
}

// object consumes the members of an object whose '{' has been read.
func (w *strictWalker) object(t reflect.Type) error {
	info := strictFieldsOf(t)
	seen := make([]bool, len(info.fields))
	for w.dec.More() {
		tok, err := w.dec.Token()
		if err != nil {
			return err
		}
		key, _ := tok.(string) // Token returns a string or an error here
		i, known := info.byName[key]
		switch {
		case !known:
			name := w.fieldPath(key)
			w.refuse(Invalid(CodeUnknownField, name, fmt.Sprintf("unknown field %q", name)))
		case seen[i]:
			name := w.fieldPath(key)
			w.refuse(Invalid(CodeDuplicateField, name, fmt.Sprintf("field %q appears more than once", name)))
		default:
			seen[i] = true
			w.path = append(w.path, key)
			err := w.value(info.fields[i].typ)
			w.path = w.path[:len(w.path)-1]
			if err != nil {
				return err
			}
			continue
		}
		if err := w.dec.Decode(new(skipValue)); err != nil {
			return err
		}
	}
	_, err := w.dec.Token() // '}'
	return err
}

// skipValue consumes one JSON value, which Decode still checks for syntax.
type skipValue struct{}

func (skipValue) UnmarshalJSON([]byte) error { return nil }

var (
	jsonUnmarshalerType = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// strictTarget follows the pointers of t and says whether the value it
// receives is walked: a struct, or a slice or array whose elements may be
// structs. Types that decode themselves, maps and interfaces are not.
func strictTarget(t reflect.Type) (reflect.Type, bool) {
	for range 32 { // a cap against type P *P
		if decodesItself(t) {
			return t, false
		}
		if t.Kind() != reflect.Pointer {
			break
		}
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct:
		return t, true
	case reflect.Slice, reflect.Array:
		e := t.Elem()
		for range 32 {
			if e.Kind() != reflect.Pointer || decodesItself(e) {
				break
			}
			e = e.Elem()
		}
		if decodesItself(e) {
			return t, false
		}
		switch e.Kind() {
		case reflect.Struct, reflect.Slice, reflect.Array:
			return t, true
		}
	}
	return t, false
}

func decodesItself(t reflect.Type) bool {
	if t.Kind() != reflect.Pointer && t.Kind() != reflect.Interface {
		t = reflect.PointerTo(t)
	}
	return t.Implements(jsonUnmarshalerType) || t.Implements(textUnmarshalerType)
}

// strictCovers reports whether the strict walk (strictTarget) reaches
// every struct that decoding into t can fill, so that encoding/json's
// DisallowUnknownFields has nothing to add to it: no struct lies inside a
// map, and no interface (which may hold a pointer to a struct) is on the
// way. Types that decode themselves are their own judges either way:
// DisallowUnknownFields does not reach into them.
func strictCovers(t reflect.Type) bool {
	if c, ok := strictCoverCache.Load(t); ok {
		return c.(bool)
	}
	c := coversType(t, map[coverKey]bool{}, false)
	strictCoverCache.Store(t, c)
	return c
}

var strictCoverCache sync.Map // reflect.Type → bool

// coverKey is a type as coversType meets it: through a map or not.
type coverKey struct {
	t     reflect.Type
	inMap bool
}

// coversType is strictCovers for t reached through a map (inMap) or not;
// seen holds what is being or has been looked at (a type may refer to
// itself, type P *P included).
func coversType(t reflect.Type, seen map[coverKey]bool, inMap bool) bool {
	if decodesItself(t) || seen[coverKey{t, inMap}] {
		return true
	}
	seen[coverKey{t, inMap}] = true
	switch t.Kind() {
	case reflect.Pointer, reflect.Slice, reflect.Array:
		return coversType(t.Elem(), seen, inMap)
	case reflect.Map:
		return coversType(t.Elem(), seen, true)
	case reflect.Interface:
		return false
	case reflect.Struct:
		if inMap {
			return false
		}
		for _, f := range strictFieldsOf(t).fields {
			if !coversType(f.typ, seen, false) {
				return false
			}
		}
	}
	return true
}

// strictFields are the JSON names of a struct type's fields, as
// encoding/json sees them (tags, embedded structs, Go's dominance rules).
type strictFields struct {
	byName map[string]int
	fields []strictField
}

type strictField struct {
	name  string
	typ   reflect.Type
	index []int // path of field indexes, for the dominance rules
	tag   bool  // the name comes from a json tag
}

var strictFieldCache sync.Map // reflect.Type → *strictFields

func strictFieldsOf(t reflect.Type) *strictFields {
	if f, ok := strictFieldCache.Load(t); ok {
		return f.(*strictFields)
	}
	f, _ := strictFieldCache.LoadOrStore(t, buildStrictFields(t))
	return f.(*strictFields)
}

// buildStrictFields follows encoding/json's typeFields: a breadth-first walk
// of embedded structs in which a shallower field hides a deeper one of the
// same name, a tagged field wins at equal depth, and two fields left at the
// same depth with the same name both drop out.
func buildStrictFields(t reflect.Type) *strictFields {
	type embedded struct {
		typ   reflect.Type
		index []int
	}
	var all []strictField
	next := []embedded{{typ: t}}
	visited := map[reflect.Type]bool{}
	// How many times each type of current (queued once) was embedded at
	// this depth.
	var count, nextCount map[reflect.Type]int
	for len(next) > 0 {
		current := next
		next = nil
		count, nextCount = nextCount, map[reflect.Type]int{}
		for _, c := range current {
			if visited[c.typ] {
				continue
			}
			visited[c.typ] = true
			for i := range c.typ.NumField() {
				sf := c.typ.Field(i)
				if sf.Anonymous {
					et := sf.Type
					if et.Kind() == reflect.Pointer {
						et = et.Elem()
					}
					if !sf.IsExported() && et.Kind() != reflect.Struct {
						continue
					}
				} else if !sf.IsExported() {
					continue
				}
				tag := sf.Tag.Get("json")
				if tag == "-" {
					continue
				}
				name, _, _ := strings.Cut(tag, ",")
				if !validTagName(name) {
					name = ""
				}
				index := append(append([]int(nil), c.index...), i)
				ft := sf.Type
				if ft.Name() == "" && ft.Kind() == reflect.Pointer {
					ft = ft.Elem()
				}
				if name != "" || !sf.Anonymous || ft.Kind() != reflect.Struct {
					f := strictField{name: name, typ: sf.Type, index: index, tag: name != ""}
					if f.name == "" {
						f.name = sf.Name
					}
					all = append(all, f)
					if count[c.typ] > 1 {
						// The same struct embedded twice at this depth:
						// a copy makes its fields annihilate.
						all = append(all, f)
					}
					continue
				}
				nextCount[ft]++
				if nextCount[ft] == 1 {
					next = append(next, embedded{typ: ft, index: index})
				}
			}
		}
	}
	slices.SortStableFunc(all, func(a, b strictField) int {
		if c := strings.Compare(a.name, b.name); c != 0 {
			return c
		}
		if c := cmp.Compare(len(a.index), len(b.index)); c != 0 {
			return c
		}
		if a.tag != b.tag {
			if a.tag {
				return -1
			}
			return 1
		}
		return slices.Compare(a.index, b.index)
	})
	out := &strictFields{byName: map[string]int{}}
	for i := 0; i < len(all); {
		j := i + 1
		for j < len(all) && all[j].name == all[i].name {
			j++
		}
		// all[i] dominates unless its first rival is as shallow and as
		// tagged as it is.
		if j == i+1 || len(all[i].index) != len(all[i+1].index) || all[i].tag != all[i+1].tag {
			out.byName[all[i].name] = len(out.fields)
			out.fields = append(out.fields, all[i])
		}
		i = j
	}
	return out
}

// validTagName is encoding/json's isValidTag.
func validTagName(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		switch {
		case strings.ContainsRune("!#$%&()*+-./:;<=>?@[]^_{|}~ ", c):
		case !unicode.IsLetter(c) && !unicode.IsDigit(c):
			return false
		}
	}
	return true
}

func jsonError(err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return New(http.StatusBadRequest, CodeMalformedJSON,
			fmt.Sprintf("malformed JSON at byte %d", syn.Offset))
	case errors.As(err, &typ):
		field := typ.Field
		return Invalid(CodeInvalidField, field,
			fmt.Sprintf("field %q must be of JSON type %s", field, jsonKind(typ.Type.Kind().String())))
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return New(http.StatusBadRequest, CodeMalformedJSON, "truncated JSON")
	}
	// encoding/json reports unknown fields only as text: `json: unknown field "x"`.
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		name = strings.Trim(name, `"`)
		return Invalid(CodeUnknownField, name, fmt.Sprintf("unknown field %q", name))
	}
	return New(http.StatusBadRequest, CodeMalformedJSON, "malformed JSON")
}

func jsonKind(k string) string {
	switch k {
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64", "float32", "float64":
		return "number"
	case "slice", "array":
		return "array"
	case "map", "struct":
		return "object"
	case "bool":
		return "boolean"
	}
	return k
}
