package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
)

// DecodeJSON reads r's body into v strictly: the content type must be JSON,
// unknown fields are refused (unknown_field), so is trailing data, and a body
// over the route's limit (enforced by the gateway with http.MaxBytesReader)
// gives 413 body_too_large. An empty body decodes as {} when allowEmpty.
func DecodeJSON(r *http.Request, v any, allowEmpty bool) error {
	body, err := io.ReadAll(r.Body)
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

// CheckJSONContentType refuses a request whose Content-Type is set and is not
// JSON (415 unsupported_media_type). A missing Content-Type is accepted, as
// curl -d without -H sends form encoding only when asked to.
func CheckJSONContentType(r *http.Request) error {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return nil
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || !(mt == "application/json" || strings.HasSuffix(mt, "+json")) {
		return New(http.StatusUnsupportedMediaType, CodeUnsupportedMediaType,
			"Content-Type must be application/json")
	}
	return nil
}

// DecodeJSONBytes decodes one JSON object from body into v, strictly.
func DecodeJSONBytes(body []byte, v any) error {
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
