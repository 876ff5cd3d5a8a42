package transport

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/grpc-ecosystem/grpc-gateway/v2/utilities"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// The REST gateway is strict about what it accepts, in one place for every
// route: a request that is not exactly what the API describes is refused
// before it reaches a handler, never half-understood. A misspelled field
// dropped in silence once stored a message twice (the idempotency key
// was the field that was lost).

// restGuard holds the gateway's ServeMux for the answers it writes itself.
type restGuard struct{ mux *runtime.ServeMux }

// strictQueryOnce sets the gateway's query parser once for every server
// in the process: grpc-gateway keeps it in a package variable, which its
// option sets whatever mux it is applied to (here none), and setting it
// again while another server's requests read it would be a data race.
var strictQueryOnce sync.Once

// newGateway returns the gateway's ServeMux, strict, with opts added.
func newGateway(opts ...runtime.ServeMuxOption) *runtime.ServeMux {
	strictQueryOnce.Do(func() { runtime.SetQueryParameterParser(strictQuery{})(nil) })
	g := &restGuard{}
	g.mux = runtime.NewServeMux(append([]runtime.ServeMuxOption{
		runtime.WithMarshalerOption(runtime.MIMEWildcard, ndjsonStreams{&runtime.HTTPBodyMarshaler{Marshaler: strictJSON{&runtime.JSONPb{
			MarshalOptions:   protojson.MarshalOptions{EmitUnpopulated: true},
			UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: false},
		}}}}),
		runtime.WithMiddlewares(probeMiddleware, g.checkRequest),
		runtime.WithRoutingErrorHandler(routingError),
	}, opts...)...)
	return g.mux
}

// strictJSON is protojson that refuses unknown fields (JSONPb's
// UnmarshalOptions) and anything after the one JSON value of a body.
type strictJSON struct{ *runtime.JSONPb }

// NewDecoder implements runtime.Marshaler.
func (j strictJSON) NewDecoder(r io.Reader) runtime.Decoder {
	return runtime.DecoderFunc(func(v any) error {
		d := json.NewDecoder(r)
		var raw json.RawMessage
		if err := d.Decode(&raw); err != nil {
			if errors.Is(err, io.EOF) {
				return err // no body: the request is its path and query
			}
			return fmt.Errorf("request body is not JSON: %w", err)
		}
		if err := j.Unmarshal(raw, v); err != nil {
			return bodyError(err, v)
		}
		if _, err := d.Token(); !errors.Is(err, io.EOF) {
			return errors.New("request body: data after the JSON object; send exactly one object")
		}
		return nil
	})
}

// strictQuery is grpc-gateway's query parser, refusing a parameter that
// names no field of the request (the default ignores it: ?before=10 would
// silently return the newest page).
type strictQuery struct{ runtime.DefaultQueryParser }

// Parse implements runtime.QueryParameterParser.
func (p strictQuery) Parse(msg proto.Message, values url.Values, filter *utilities.DoubleArray) error {
	fields := msg.ProtoReflect().Descriptor().Fields()
	for key := range values {
		name, _, _ := strings.Cut(key, ".")
		name, _, _ = strings.Cut(name, "[")
		if fields.ByTextName(name) == nil && fields.ByJSONName(name) == nil {
			return fmt.Errorf("unknown query parameter %q; %s", truncate(key, 40), fieldList(msg))
		}
	}
	return p.DefaultQueryParser.Parse(msg, values, filter)
}

// fieldList names msg's fields as JSON and query parameters spell them.
func fieldList(msg proto.Message) string {
	d := msg.ProtoReflect().Descriptor()
	names := make([]string, d.Fields().Len())
	for i := range names {
		names[i] = d.Fields().Get(i).JSONName()
	}
	return fmt.Sprintf("%s has %s", d.Name(), strings.Join(names, ", "))
}

// bodyError says what is wrong with a JSON body that did not decode into
// v, and for an unknown field which fields v has.
func bodyError(err error, v any) error {
	msg := strings.TrimPrefix(err.Error(), "proto:")
	msg = strings.TrimLeft(msg, " \u00a0") // protobuf's errors vary the space
	if m, ok := v.(proto.Message); ok && strings.Contains(msg, "unknown field") {
		msg += "; " + fieldList(m)
	}
	return errors.New("request body: " + msg)
}

// checkRequest refuses, for every route, a body that is not JSON (415) and
// path or query values that are not UTF-8 (400: the gateway would fail to
// encode them and answer 500).
func (g *restGuard) checkRequest(next runtime.HandlerFunc) runtime.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request, params map[string]string) {
		if err := checkContentType(r); err != nil {
			g.refuse(w, r, http.StatusUnsupportedMediaType, err)
			return
		}
		if err := checkUTF8(r.URL.Query(), params); err != nil {
			g.refuse(w, r, http.StatusBadRequest, err)
			return
		}
		// Every POST route takes its fields from the body (body: "*" in
		// chat_service_http.yaml) and never reads the query string.
		if r.Method == http.MethodPost && r.URL.RawQuery != "" {
			g.refuse(w, r, http.StatusBadRequest, errors.New("a POST takes its fields in the JSON body, not the query string"))
			return
		}
		next(w, r, params)
	}
}

// checkContentType admits a request without a body, or one whose body is
// declared application/json (in UTF-8, the only encoding JSON has).
func checkContentType(r *http.Request) error {
	if r.ContentLength == 0 {
		return nil
	}
	const want = "send a JSON body with Content-Type: application/json (curl: --json '{...}')"
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return fmt.Errorf("request body without a Content-Type; %s", want)
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || mt != "application/json" {
		return fmt.Errorf("Content-Type %q is not accepted; %s", truncate(ct, 100), want)
	}
	for k, v := range params {
		if k != "charset" || !strings.EqualFold(v, "utf-8") {
			return fmt.Errorf("Content-Type parameter %s=%q is not accepted; JSON is UTF-8", truncate(k, 40), truncate(v, 40))
		}
	}
	return nil
}

func checkUTF8(query url.Values, params map[string]string) error {
	for k, vs := range query {
		if !utf8.ValidString(k) {
			return errors.New("a query parameter name is not valid UTF-8")
		}
		for _, v := range vs {
			if !utf8.ValidString(v) {
				return fmt.Errorf("query parameter %s is not valid UTF-8; pass values as URL-encoded UTF-8", truncate(k, 40))
			}
		}
	}
	for k, v := range params {
		if !utf8.ValidString(v) {
			return fmt.Errorf("path parameter %s is not valid UTF-8", k)
		}
	}
	return nil
}

// refuse answers like the gateway's own errors: a JSON status with the
// INVALID_ARGUMENT code and err's text, under the given HTTP status.
func (g *restGuard) refuse(w http.ResponseWriter, r *http.Request, httpStatus int, err error) {
	_, out := runtime.MarshalerForRequest(g.mux, r)
	st := status.New(codes.InvalidArgument, err.Error())
	runtime.HTTPError(r.Context(), g.mux, out, w, r, &runtime.HTTPStatusError{HTTPStatus: httpStatus, Err: st.Err()})
}

// probeKey marks a request made only to learn whether a route exists for
// a method (see allowedMethods); its value records the answer.
type probeKey struct{}

// probeMiddleware records that a probe matched a route, without running it.
func probeMiddleware(next runtime.HandlerFunc) runtime.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request, params map[string]string) {
		if matched, ok := r.Context().Value(probeKey{}).(*bool); ok {
			*matched = true
			return
		}
		next(w, r, params)
	}
}

// routingError answers a request that matches no route: 404, or 405 with
// the Allow header when the path exists for other methods.
func routingError(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, httpStatus int) {
	if ctx.Value(probeKey{}) != nil {
		return
	}
	if httpStatus != http.StatusMethodNotAllowed {
		runtime.DefaultRoutingErrorHandler(ctx, mux, m, w, r, httpStatus)
		return
	}
	allow := allowedMethods(mux, r)
	w.Header().Set("Allow", strings.Join(allow, ", "))
	st := status.Newf(codes.Unimplemented, "method %s is not allowed on %s; allowed: %s", truncate(r.Method, 20), truncate(r.URL.Path, 100), strings.Join(allow, ", "))
	runtime.HTTPError(ctx, mux, m, w, r, &runtime.HTTPStatusError{HTTPStatus: http.StatusMethodNotAllowed, Err: st.Err()})
}

// allowedMethods asks mux which methods it serves r's path with, by
// replaying r as a bodiless probe for each: the routes stay the gateway's
// own, whatever is registered.
func allowedMethods(mux *runtime.ServeMux, r *http.Request) []string {
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		matched := false
		probe := r.Clone(context.WithValue(r.Context(), probeKey{}, &matched))
		probe.Method, probe.Header, probe.Body, probe.ContentLength = m, http.Header{}, http.NoBody, 0
		mux.ServeHTTP(discard{}, probe)
		if matched {
			allow = append(allow, m)
		}
	}
	return allow
}

// discard is a ResponseWriter for probes, which write nothing.
type discard struct{}

func (discard) Header() http.Header         { return http.Header{} }
func (discard) Write(b []byte) (int, error) { return len(b), nil }
func (discard) WriteHeader(int)             {}

// truncate shortens s for inclusion in an error message, which must be
// UTF-8 (the JSON status could not be written otherwise).
func truncate(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
