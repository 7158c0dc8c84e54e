package mb

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"mime"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// SpecVersion is the CloudEvents specification version of every [Envelope]
// mb writes and the only one it reads.
const SpecVersion = "1.0"

// ErrInvalidEnvelope is wrapped by every problem [Envelope.Validate],
// [EnvelopeFromHeaders], [MarshalStructured] and [UnmarshalStructured]
// report: a missing required attribute, a wrong specversion, a malformed
// attribute value or extension name, or a structured event that is not a
// CloudEvents JSON object.
var ErrInvalidEnvelope = errors.New("mb: invalid envelope")

// Envelope is a message on the wire: the CloudEvents 1.0 context attributes
// around the encoded payload. Transports carry it in binary mode (attributes
// as headers, see [Envelope.ToHeaders] and [EnvelopeFromHeaders]) or in
// structured mode (one JSON object, see [MarshalStructured] and
// [UnmarshalStructured]).
//
// An empty string means the attribute is absent, as does a zero Time. Build
// one from a message with [Registry.Encode] and turn it back into the
// message with [Registry.Decode]. An Envelope is a plain value: it is not
// safe for concurrent modification. The functions of this package never
// modify the Envelopes, maps or byte slices they are given; only
// [EnvelopeFromHeaders] keeps its data argument, as Data, without copying.
type Envelope struct {
	// ID identifies the message (CloudEvents "id"): a UUIDv7 when mb
	// generates it, never regenerated on the way, so consumers can
	// de-duplicate on (Source, ID). Required.
	ID string
	// Source identifies the context in which the message was produced
	// (CloudEvents "source"), a URI-reference such as "/orders" or
	// "urn:example:billing". Required.
	Source string
	// SpecVersion is the CloudEvents version, always [SpecVersion]
	// ("1.0"). Required.
	SpecVersion string
	// Type is the message name, from the message type's MessageName
	// method (CloudEvents "type"). Required.
	Type string
	// Time is when the message was produced (CloudEvents "time"); zero
	// means absent. It is written in RFC 3339 with nanoseconds.
	Time time.Time
	// DataContentType is the media type of Data, such as
	// "application/json" (CloudEvents "datacontenttype"; the "content-type"
	// header in binary mode).
	DataContentType string
	// DataSchema is a URI of the schema Data adheres to (CloudEvents
	// "dataschema").
	DataSchema string
	// Subject is the subject of the message in the context of the
	// producer, such as the id of the aggregate it is about (CloudEvents
	// "subject").
	Subject string

	// CorrelationID is the id of the root message of the business flow
	// (extension "correlationid").
	CorrelationID string
	// CausationID is the id of the message whose handler produced this one
	// (extension "causationid").
	CausationID string
	// TraceParent is the W3C trace context traceparent (extension
	// "traceparent").
	TraceParent string
	// TraceState is the W3C trace context tracestate (extension
	// "tracestate").
	TraceState string
	// PartitionKey orders messages: those with the same key are delivered
	// in order (extension "partitionkey").
	PartitionKey string

	// Extensions holds the other extension attributes by name. Names are
	// lowercase ASCII letters and digits (CloudEvents 1.0, which
	// recommends at most 20 characters); the names of the context
	// attributes and of the extensions that have a field above are
	// rejected, as is "data". Empty values are absent.
	Extensions map[string]string

	// Data is the encoded message, as produced by a [Codec].
	Data []byte
}

// Attribute names of CloudEvents 1.0 and of the extensions mb knows.
const (
	attrID              = "id"
	attrSource          = "source"
	attrSpecVersion     = "specversion"
	attrType            = "type"
	attrTime            = "time"
	attrDataContentType = "datacontenttype"
	attrDataSchema      = "dataschema"
	attrSubject         = "subject"
	attrCorrelationID   = "correlationid"
	attrCausationID     = "causationid"
	attrTraceParent     = "traceparent"
	attrTraceState      = "tracestate"
	attrPartitionKey    = "partitionkey"
	attrData            = "data"
	attrDataBase64      = "data_base64"
)

// field returns a pointer to the string field that holds attribute name, or
// nil for time, the extensions map and unknown names.
func (e *Envelope) field(name string) *string {
	switch name {
	case attrID:
		return &e.ID
	case attrSource:
		return &e.Source
	case attrSpecVersion:
		return &e.SpecVersion
	case attrType:
		return &e.Type
	case attrDataContentType:
		return &e.DataContentType
	case attrDataSchema:
		return &e.DataSchema
	case attrSubject:
		return &e.Subject
	case attrCorrelationID:
		return &e.CorrelationID
	case attrCausationID:
		return &e.CausationID
	case attrTraceParent:
		return &e.TraceParent
	case attrTraceState:
		return &e.TraceState
	case attrPartitionKey:
		return &e.PartitionKey
	}
	return nil
}

// stringAttrs lists the string attributes in the order they are written.
var stringAttrs = [...]string{
	attrSpecVersion, attrID, attrSource, attrType, attrSubject,
	// time goes here
	attrDataContentType, attrDataSchema,
	attrCorrelationID, attrCausationID, attrTraceParent, attrTraceState, attrPartitionKey,
}

// attrPtrs returns pointers to e's string attributes, in stringAttrs
// order: the loops over all attributes use it instead of a lookup by name.
func (e *Envelope) attrPtrs() [len(stringAttrs)]*string {
	return [...]*string{
		&e.SpecVersion, &e.ID, &e.Source, &e.Type, &e.Subject,
		&e.DataContentType, &e.DataSchema,
		&e.CorrelationID, &e.CausationID, &e.TraceParent, &e.TraceState, &e.PartitionKey,
	}
}

// stringHeaders holds the binary-mode header name of each of stringAttrs,
// built once so that writing headers concatenates nothing.
var stringHeaders = func() (h [len(stringAttrs)]string) {
	for i, name := range stringAttrs {
		h[i] = headerPrefix + name
		if name == attrDataContentType {
			h[i] = headerContentType
		}
	}
	return h
}()

// fieldNames gives, for the error messages, the Go field of each attribute.
var fieldNames = map[string]string{
	attrID: "ID", attrSource: "Source", attrSpecVersion: "SpecVersion", attrType: "Type",
	attrTime: "Time", attrDataContentType: "DataContentType", attrDataSchema: "DataSchema",
	attrSubject: "Subject", attrCorrelationID: "CorrelationID", attrCausationID: "CausationID",
	attrTraceParent: "TraceParent", attrTraceState: "TraceState", attrPartitionKey: "PartitionKey",
}

func invalidEnvelope(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidEnvelope}, args...)...)
}

// Validate checks e against CloudEvents 1.0 and returns all problems joined
// with [errors.Join], each wrapping [ErrInvalidEnvelope] and naming the
// attribute: id, source and type are required, specversion must be "1.0",
// source and dataschema must be URI references, datacontenttype a media
// type, attribute values must be valid UTF-8 without the characters
// CloudEvents disallows (control characters, surrogates, noncharacters),
// and extension names must be lowercase ASCII letters and digits and must
// not be the name of a context attribute or of an extension that has a
// field. Data is not looked at. Validate returns nil for a valid envelope.
func (e *Envelope) Validate() error {
	if e == nil {
		return invalidEnvelope("nil envelope")
	}
	var errs []error
	for i, p := range e.attrPtrs() {
		if err := checkValue(stringAttrs[i], *p); err != nil {
			errs = append(errs, err)
		}
	}
	if e.ID == "" || e.Source == "" || e.Type == "" {
		for _, name := range [...]string{attrID, attrSource, attrType} {
			if *e.field(name) == "" {
				errs = append(errs, invalidEnvelope("required attribute %q is missing; set Envelope.%s", name, fieldNames[name]))
			}
		}
	}
	if e.SpecVersion != SpecVersion {
		if e.SpecVersion == "" {
			errs = append(errs, invalidEnvelope("required attribute %q is missing; set Envelope.SpecVersion to %q", attrSpecVersion, SpecVersion))
		} else {
			errs = append(errs, invalidEnvelope("specversion is %q; only %q is supported", e.SpecVersion, SpecVersion))
		}
	}
	if e.Source != "" && !plainURIRef(e.Source) {
		if _, err := url.Parse(e.Source); err != nil {
			errs = append(errs, invalidEnvelope("source %q is not a URI reference: %v", e.Source, err))
		}
	}
	if e.DataSchema != "" {
		if _, err := url.Parse(e.DataSchema); err != nil {
			errs = append(errs, invalidEnvelope("dataschema %q is not a URI: %v", e.DataSchema, err))
		}
	}
	if e.DataContentType != "" && e.DataContentType != "application/json" {
		if _, _, err := mime.ParseMediaType(e.DataContentType); err != nil {
			errs = append(errs, invalidEnvelope("datacontenttype %q is not a media type: %v", e.DataContentType, err))
		}
	}
	var names []string
	if len(e.Extensions) > 0 {
		names = slices.Sorted(maps.Keys(e.Extensions))
	}
	for _, name := range names {
		if err := checkExtensionName(name); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := checkValue(name, e.Extensions[name]); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// plainURIRef reports whether s is made only of characters that make any
// string a valid relative URI reference (no scheme, no escapes), so that
// the common "/orders" needs no url.Parse.
func plainURIRef(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') && (c < '0' || c > '9') &&
			c != '/' && c != '.' && c != '_' && c != '-' && c != '~' {
			return false
		}
	}
	return true
}

// checkExtensionName reports whether name may be a key of
// Envelope.Extensions.
func checkExtensionName(name string) error {
	if name == "" {
		return invalidEnvelope("extension name is empty")
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return invalidEnvelope("extension name %q: CloudEvents attribute names are lowercase ASCII letters and digits only", name)
		}
	}
	if name == attrData || name == attrTime {
		return invalidEnvelope("extension name %q is reserved by CloudEvents", name)
	}
	if f, ok := fieldNames[name]; ok {
		return invalidEnvelope("extension name %q is a known attribute; set Envelope.%s instead of Extensions[%q]", name, f, name)
	}
	return nil
}

// checkValue reports whether v is an allowed CloudEvents string.
func checkValue(name, v string) error {
	// Fast path: printable ASCII is always allowed.
	i := 0
	for i < len(v) && v[i] >= 0x20 && v[i] < 0x7f {
		i++
	}
	if i == len(v) {
		return nil
	}
	if !utf8.ValidString(v) {
		return invalidEnvelope("attribute %q is not valid UTF-8", name)
	}
	for _, r := range v {
		if r <= 0x1f || (r >= 0x7f && r <= 0x9f) || (r >= 0xd800 && r <= 0xdfff) ||
			(r >= 0xfdd0 && r <= 0xfdef) || r&0xfffe == 0xfffe {
			return invalidEnvelope("attribute %q contains the character %U, which CloudEvents disallows", name, r)
		}
	}
	return nil
}

// Binary-mode header names.
const (
	headerPrefix      = "ce-"
	headerContentType = "content-type"
)

// ToHeaders returns e's attributes as binary-mode headers with the
// CloudEvents binding names: "ce-" followed by the attribute name ("ce-id",
// "ce-source", "ce-specversion", "ce-type", "ce-time" in RFC 3339 with
// nanoseconds, "ce-subject", "ce-dataschema", "ce-correlationid",
// "ce-causationid", "ce-traceparent", "ce-tracestate", "ce-partitionkey",
// "ce-<name>" for each extension) and "content-type" for the data content
// type. Absent attributes have no header. The payload, e.Data, travels as
// the message body.
//
// ToHeaders writes what e holds without checking it; call
// [Envelope.Validate] first (a transport does it once before sending). Header
// values are not escaped: a transport whose headers cannot carry arbitrary
// UTF-8 (HTTP) must percent-encode them as its CloudEvents binding says.
// The returned map is new and owned by the caller.
func (e *Envelope) ToHeaders() map[string]string {
	var ts string
	if !e.Time.IsZero() {
		ts = e.Time.Format(time.RFC3339Nano)
	}
	return e.headers(ts)
}

// headerTime is the binary-mode header of the time attribute.
const headerTime = headerPrefix + attrTime

// headers is ToHeaders with e.Time already formatted as ts ("" when
// absent), so that a batch of envelopes with one time formats it once.
func (e *Envelope) headers(ts string) map[string]string {
	h := make(map[string]string, 8+len(e.Extensions))
	for i, p := range e.attrPtrs() {
		if *p != "" {
			h[stringHeaders[i]] = *p
		}
	}
	if ts != "" {
		h[headerTime] = ts
	}
	for name, v := range e.Extensions {
		if v != "" {
			h[headerPrefix+name] = v
		}
	}
	return h
}

// EnvelopeFromHeaders builds an Envelope from binary-mode headers, the
// inverse of [Envelope.ToHeaders], with data as its payload (not copied).
// Header names are matched case-insensitively; headers other than
// "content-type" and "ce-*" are ignored, so a transport may pass all the
// headers it received. Unknown "ce-*" headers become extensions, and empty
// values are absent.
//
// It returns an error wrapping [ErrInvalidEnvelope] when the result is not
// valid (see [Envelope.Validate]), when "ce-time" is not an RFC 3339
// timestamp, or when two headers differing only in case have different
// values; all problems are joined.
func EnvelopeFromHeaders(h map[string]string, data []byte) (*Envelope, error) {
	e := &Envelope{}
	if err := e.fromHeaders(h, data); err != nil {
		return nil, err
	}
	return e, nil
}

// fromHeaders is EnvelopeFromHeaders into e, which it overwrites; the
// consumer decodes into an Envelope on its stack.
func (e *Envelope) fromHeaders(h map[string]string, data []byte) error {
	*e = Envelope{Data: data}
	var errs []error
	// Header names that differ only in case must agree. When every name is
	// already lowercase (what mb writes) no two can clash, and one pass in
	// map order does; otherwise start again over the sorted names, keeping
	// track of the attributes seen.
	lower := true
	for k, v := range h {
		if hasUpper(k) {
			lower = false
			break
		}
		errs = e.setHeader(k, k, v, errs)
	}
	if !lower {
		*e = Envelope{Data: data}
		errs = errs[:0]
		seen := make(map[string]string, len(h))
		for _, k := range slices.Sorted(maps.Keys(h)) {
			v, lk := h[k], strings.ToLower(k)
			name, ok := headerAttr(lk)
			if !ok || (name == attrDataContentType && lk != headerContentType) {
				errs = e.setHeader(k, lk, v, errs) // ignored, or an error
				continue
			}
			if prev, dup := seen[name]; dup {
				if prev != v {
					errs = append(errs, invalidEnvelope("headers for attribute %q differ only in case and have different values", name))
				}
				continue
			}
			seen[name] = v
			errs = e.setHeader(k, lk, v, errs)
		}
	}
	if len(errs) == 0 {
		return e.Validate()
	}
	// Map order must not leak into the error text.
	slices.SortFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
	return errors.Join(append(errs, e.Validate())...)
}

// hasUpper reports whether s has an ASCII upper-case letter.
func hasUpper(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; 'A' <= c && c <= 'Z' {
			return true
		}
	}
	return false
}

// headerAttr returns the attribute the lowercase header name lk carries,
// and false for a header that is not a binary-mode attribute.
func headerAttr(lk string) (string, bool) {
	if lk == headerContentType {
		return attrDataContentType, true
	}
	if name, ok := strings.CutPrefix(lk, headerPrefix); ok {
		return name, true
	}
	return "", false
}

// setHeader sets the attribute of header k (lowercased: lk) to v, and
// returns errs with what is wrong with it appended.
func (e *Envelope) setHeader(k, lk, v string, errs []error) []error {
	name, ok := headerAttr(lk)
	switch {
	case !ok:
		return errs
	case name == attrDataContentType && lk != headerContentType:
		// Not a binary-mode header: the content type travels as
		// content-type.
		return append(errs, invalidEnvelope("header %q: in binary mode the data content type is the %q header", k, headerContentType))
	case v == "":
		return errs
	}
	if err := e.set(name, v); err != nil {
		errs = append(errs, err)
	}
	return errs
}

// set sets the attribute name (known or extension) to a non-empty v.
func (e *Envelope) set(name, v string) error {
	if p := e.field(name); p != nil {
		*p = v
		return nil
	}
	if name == attrTime {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return invalidEnvelope("time %q is not an RFC 3339 timestamp: %v", v, err)
		}
		e.Time = t
		return nil
	}
	if err := checkExtensionName(name); err != nil {
		return err
	}
	if e.Extensions == nil {
		e.Extensions = make(map[string]string)
	}
	e.Extensions[name] = v
	return nil
}

// isJSONContentType reports whether data of media type ct is JSON: ct is
// empty (CloudEvents' default), application/json, text/json or ends in
// "+json".
func isJSONContentType(ct string) bool {
	if ct == "" {
		return true
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	return mt == "application/json" || mt == "text/json" || strings.HasSuffix(mt, "+json")
}

// embeddable reports whether d can be written as the "data" member of a
// structured event and read back byte for byte.
func embeddable(d []byte) bool {
	return len(d) > 0 && utf8.Valid(d) && json.Valid(d) &&
		!isJSONSpace(d[0]) && !isJSONSpace(d[len(d)-1]) && string(d) != "null"
}

func isJSONSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// MarshalStructured returns e as a structured-mode CloudEvents JSON object
// (media type "application/cloudevents+json"). The attributes are written
// in a fixed order, extensions sorted by name. Data is embedded as the JSON
// member "data" when the data content type is JSON (or absent) and Data is
// a JSON value that reads back byte for byte (valid UTF-8, no surrounding
// white space, not null); otherwise it is written base64-encoded as
// "data_base64". Empty Data is written as neither.
//
// MarshalStructured validates e first and returns the [Envelope.Validate]
// error for an invalid envelope. It is safe for concurrent use.
func MarshalStructured(e *Envelope) ([]byte, error) {
	if err := e.Validate(); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	buf.Grow(256 + len(e.Data)*4/3)
	buf.WriteByte('{')
	first := true
	member := func(name string) {
		if !first {
			buf.WriteByte(',')
		}
		first = false
		writeJSONString(&buf, name)
		buf.WriteByte(':')
	}
	str := func(name, v string) {
		if v != "" {
			member(name)
			writeJSONString(&buf, v)
		}
	}
	for i, p := range e.attrPtrs() {
		name := stringAttrs[i]
		str(name, *p)
		if name == attrSubject && !e.Time.IsZero() {
			str(attrTime, e.Time.Format(time.RFC3339Nano))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(e.Extensions)) {
		str(name, e.Extensions[name])
	}
	switch {
	case len(e.Data) == 0:
	case isJSONContentType(e.DataContentType) && embeddable(e.Data):
		member(attrData)
		buf.Write(e.Data)
	default:
		member(attrDataBase64)
		buf.WriteByte('"')
		enc := base64.NewEncoder(base64.StdEncoding, &buf)
		enc.Write(e.Data) // writes to a bytes.Buffer cannot fail
		enc.Close()
		buf.WriteByte('"')
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

// writeJSONString writes s as a JSON string without HTML escaping. s is
// valid UTF-8 (checked by Validate).
func writeJSONString(buf *bytes.Buffer, s string) {
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	enc.Encode(s)               // a string always encodes
	buf.Truncate(buf.Len() - 1) // the newline Encode appends
}

// UnmarshalStructured parses a structured-mode CloudEvents JSON object, the
// inverse of [MarshalStructured]. Member names are case-sensitive, as
// CloudEvents requires. A null member is absent. The context attributes
// must be JSON strings; extensions may be strings, booleans or numbers,
// kept in Extensions as their JSON text ("true", "42"). "data" and
// "data_base64" are mutually exclusive; "data" becomes Data as its JSON
// text when the data content type is JSON (or absent), as the string's
// bytes when it is a JSON string, and as its JSON text otherwise.
//
// It returns an error wrapping [ErrInvalidEnvelope] for input that is not a
// JSON object, for members of the wrong type and for an envelope that
// [Envelope.Validate] rejects, never panics, and does not retain b. It is
// safe for concurrent use. It applies no size limit: the transport bounds
// what it reads.
func UnmarshalStructured(b []byte) (*Envelope, error) {
	var members map[string]json.RawMessage
	if err := json.Unmarshal(b, &members); err != nil {
		return nil, invalidEnvelope("structured event is not a JSON object: %v", err)
	}
	if members == nil {
		return nil, invalidEnvelope("structured event is null, not a JSON object")
	}
	e := &Envelope{}
	var errs []error
	var data, data64 json.RawMessage
	for _, name := range slices.Sorted(maps.Keys(members)) {
		raw := members[name]
		if string(raw) == "null" {
			continue
		}
		switch {
		case name == attrData:
			data = raw
			continue
		case name == attrDataBase64:
			data64 = raw
			continue
		}
		var v string
		if e.field(name) != nil || name == attrTime {
			if err := json.Unmarshal(raw, &v); err != nil {
				errs = append(errs, invalidEnvelope("attribute %q must be a JSON string", name))
				continue
			}
		} else {
			var err error
			if v, err = extensionValue(raw); err != nil {
				errs = append(errs, invalidEnvelope("extension %q: %v", name, err))
				continue
			}
		}
		if v == "" {
			continue
		}
		if err := e.set(name, v); err != nil {
			errs = append(errs, err)
		}
	}
	switch {
	case data != nil && data64 != nil:
		errs = append(errs, invalidEnvelope("both %q and %q are present; a CloudEvent has one or the other", attrData, attrDataBase64))
	case data64 != nil:
		var s string
		if err := json.Unmarshal(data64, &s); err != nil {
			errs = append(errs, invalidEnvelope("%q must be a JSON string", attrDataBase64))
			break
		}
		d, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			errs = append(errs, invalidEnvelope("%q is not base64: %v", attrDataBase64, err))
			break
		}
		if len(d) > 0 {
			e.Data = d
		}
	case data != nil:
		if !isJSONContentType(e.DataContentType) && data[0] == '"' {
			var s string
			if err := json.Unmarshal(data, &s); err != nil {
				errs = append(errs, invalidEnvelope("%q: %v", attrData, err))
				break
			}
			if s != "" {
				e.Data = []byte(s)
			}
			break
		}
		e.Data = slices.Clone(data)
	}
	if err := errors.Join(append(errs, e.Validate())...); err != nil {
		return nil, err
	}
	return e, nil
}

// extensionValue returns the string form of a JSON string, boolean or
// number.
func extensionValue(raw json.RawMessage) (string, error) {
	switch raw[0] {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", err
		}
		return s, nil
	case 't', 'f':
		return string(raw), nil
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		return string(raw), nil
	}
	return "", errors.New("must be a JSON string, boolean or number")
}
