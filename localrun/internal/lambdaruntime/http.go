package lambdaruntime

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-lambda-go/events"

	"github.com/clusterkeys/clusterkeys/pkg/api"
)

// Error codes of failures the runtime, not the function, answers for.
const (
	CodeFunctionError   = "function_error"
	CodeFunctionTimeout = "function_timeout"
)

// ServeHTTP invokes the function with r as an HTTP API (payload format 2.0)
// event and writes its response, as API Gateway does. A function error or
// crash answers 502 and a timeout 504, in problem+json.
func (rt *Runtime) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ev, err := Event(r)
	if err != nil {
		api.WriteError(w, api.ProblemJSON, r.Header.Get("X-Request-Id"), err)
		return
	}
	payload, err := json.Marshal(ev)
	if err != nil {
		api.WriteError(w, api.ProblemJSON, ev.RequestContext.RequestID, err)
		return
	}
	out, err := rt.Invoke(r.Context(), payload)
	if err != nil {
		var ie *InvocationError
		switch {
		case errors.As(err, &ie) && ie.Type == ErrorTypeTimeout:
			err = api.New(http.StatusGatewayTimeout, CodeFunctionTimeout, "the function did not answer in time").Wrap(err)
		case errors.As(err, &ie):
			err = api.New(http.StatusBadGateway, CodeFunctionError, "the function failed: "+ie.Type).Wrap(err)
		}
		api.WriteError(w, api.ProblemJSON, ev.RequestContext.RequestID, err)
		return
	}
	var resp events.APIGatewayV2HTTPResponse
	if err := json.Unmarshal(out, &resp); err != nil || resp.StatusCode == 0 {
		api.WriteError(w, api.ProblemJSON, ev.RequestContext.RequestID,
			api.New(http.StatusBadGateway, CodeFunctionError, "the function returned a malformed response"))
		return
	}
	body := []byte(resp.Body)
	if resp.IsBase64Encoded {
		if body, err = base64.StdEncoding.DecodeString(resp.Body); err != nil {
			api.WriteError(w, api.ProblemJSON, ev.RequestContext.RequestID,
				api.New(http.StatusBadGateway, CodeFunctionError, "the function returned a malformed base64 body"))
			return
		}
	}
	for k, v := range resp.Headers {
		w.Header().Set(k, v)
	}
	for k, vs := range resp.MultiValueHeaders {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	for _, c := range resp.Cookies {
		w.Header().Add("Set-Cookie", c)
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(body)
}

// Event builds the HTTP API payload 2.0 event API Gateway would send for r.
func Event(r *http.Request) (events.APIGatewayV2HTTPRequest, error) {
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, MaxPayload))
	if err != nil {
		return events.APIGatewayV2HTTPRequest{}, api.New(http.StatusRequestEntityTooLarge, api.CodeBodyTooLarge,
			fmt.Sprintf("request body exceeds %d bytes", MaxPayload))
	}
	rid := r.Header.Get("X-Request-Id")
	if rid == "" {
		rid = newID()
	}
	headers := map[string]string{}
	var cookies []string
	for k, vs := range r.Header {
		if k == "Cookie" {
			for _, v := range vs {
				for c := range strings.SplitSeq(v, ";") {
					if c = strings.TrimSpace(c); c != "" {
						cookies = append(cookies, c)
					}
				}
			}
			continue
		}
		headers[strings.ToLower(k)] = strings.Join(vs, ",")
	}
	if r.Host != "" {
		headers["host"] = r.Host
	}
	ip, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		ip = r.RemoteAddr
	}
	now := time.Now().UTC()
	ev := events.APIGatewayV2HTTPRequest{
		Version: "2.0", RouteKey: "$default",
		RawPath: r.URL.EscapedPath(), RawQueryString: r.URL.RawQuery,
		Cookies: cookies, Headers: headers,
		RequestContext: events.APIGatewayV2HTTPRequestContext{
			RouteKey: "$default", AccountID: "000000000000", Stage: "$default",
			RequestID: rid, APIID: "localrun", DomainName: r.Host,
			Time: now.Format("02/Jan/2006:15:04:05 -0700"), TimeEpoch: now.UnixMilli(),
			HTTP: events.APIGatewayV2HTTPRequestContextHTTPDescription{
				Method: r.Method, Path: r.URL.Path, Protocol: r.Proto,
				SourceIP: ip, UserAgent: r.UserAgent(),
			},
		},
	}
	if len(body) > 0 {
		if utf8.Valid(body) {
			ev.Body = string(body)
		} else {
			ev.Body = base64.StdEncoding.EncodeToString(body)
			ev.IsBase64Encoded = true
		}
	}
	return ev, nil
}
