package mb

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"mime"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"
)

// Sentinel errors of the wire format. Test for them with [errors.Is].
var (
	// ErrUnknownMessage is returned by [Registry.Decode] for an envelope
	// whose type is not a registered message name, and by
	// [Registry.Encode] for a message whose Go type is not registered.
	// Only registered names are ever decoded.
	ErrUnknownMessage = errors.New("mb: unknown message")

	// ErrMessageTooLarge is returned by [Registry.Decode] and
	// [Registry.Encode] when the payload is larger than
	// [RegistryOptions.MaxDataSize]. Nothing is decoded.
	ErrMessageTooLarge = errors.New("mb: message too large")

	// ErrDecode is wrapped by the error [Registry.Decode] returns when the
	// payload cannot be decoded into the registered type: corrupt data, a
	// content type the codec does not handle, or a codec that panicked.
	// Such a message will never decode; a consumer dead-letters it at once.
	ErrDecode = errors.New("mb: cannot decode message")

	// ErrDuplicateMessage is returned (or panicked with) by
	// [RegisterMessage] and [RegisterMessageSafely] when the message name
	// is already registered, whether for another type or the same one.
	ErrDuplicateMessage = errors.New("mb: duplicate message name")
)

// Codec encodes message values into payloads and back. Implementations
// must be safe for concurrent use, and Unmarshal must return an error for
// any input it cannot decode, never panic ([Registry.Decode] recovers a
// panic anyway and reports it as [ErrDecode]). Unmarshal receives a
// pointer to a new value of the registered type.
type Codec interface {
	// ContentType is the media type of what Marshal produces, written to
	// Envelope.DataContentType, such as "application/json".
	ContentType() string
	// Marshal encodes v.
	Marshal(v any) ([]byte, error)
	// Unmarshal decodes data into the value v points to.
	Unmarshal(data []byte, v any) error
}

// JSONCodec is the default [Codec]: encoding/json, content type
// "application/json". Marshal does not escape HTML characters ('<', '>',
// '&') and adds no trailing newline; Unmarshal ignores unknown fields so
// that producers can add fields before consumers know them. The zero value
// is ready to use and safe for concurrent use.
type JSONCodec struct{}

// ContentType returns "application/json".
func (JSONCodec) ContentType() string { return "application/json" }

// Marshal encodes v as JSON with [encoding/json].
func (JSONCodec) Marshal(v any) ([]byte, error) {
	je := jsonEncoders.Get().(*jsonEncoder)
	je.buf.Reset()
	if err := je.enc.Encode(v); err != nil {
		jsonEncoders.Put(je)
		return nil, err
	}
	b := je.buf.Bytes()
	out := bytes.Clone(b[:len(b)-1]) // without the newline Encode appends
	if je.buf.Cap() <= maxPooledJSONBuffer {
		jsonEncoders.Put(je)
	}
	return out, nil
}

// jsonEncoder is a reusable JSON encoder writing to its own buffer.
type jsonEncoder struct {
	buf bytes.Buffer
	enc *json.Encoder
}

// maxPooledJSONBuffer bounds the buffers kept for reuse, so that one huge
// message does not pin its buffer.
const maxPooledJSONBuffer = 64 << 10

// jsonEncoders holds encoders between JSONCodec.Marshal calls: the result
// is copied out, so an encoder and its buffer serve message after message.
var jsonEncoders = sync.Pool{New: func() any {
	je := &jsonEncoder{}
	je.enc = json.NewEncoder(&je.buf)
	je.enc.SetEscapeHTML(false)
	return je
}}

// Unmarshal decodes JSON data into the value v points to with
// [encoding/json]. Trailing data after the JSON value is an error.
func (JSONCodec) Unmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }

// TypeChecker is implemented by codecs that can tell from a Go type alone
// that they cannot carry its values: CheckType returns why, or nil. A
// [Registry] asks its codec ([RegistryOptions.Codec]) at
// [RegisterMessage], so that such a mistake stops the program at start-up
// instead of losing payloads.
type TypeChecker interface {
	CheckType(t reflect.Type) error
}

// CheckType refuses a struct type that has fields but none that
// encoding/json writes (all unexported, or tagged "-"): every value would
// encode as {} and its payload would be lost. Types that implement
// [json.Marshaler] or [encoding.TextMarshaler] (on the value or the
// pointer) encode themselves and pass, as do structs with no fields.
func (JSONCodec) CheckType(t reflect.Type) error {
	if t.Kind() != reflect.Struct || t.NumField() == 0 || marshalsItself(t) || jsonHasField(t, map[reflect.Type]bool{}) {
		return nil
	}
	return fmt.Errorf("%s has fields, but encoding/json writes none of them (they are unexported or tagged \"-\"): every %s would travel as {} and its data would be lost; export the fields that must travel, or implement json.Marshaler and json.Unmarshaler", t, t.Name())
}

func marshalsItself(t reflect.Type) bool {
	for _, tt := range []reflect.Type{t, reflect.PointerTo(t)} {
		if tt.Implements(reflect.TypeFor[json.Marshaler]()) || tt.Implements(reflect.TypeFor[encoding.TextMarshaler]()) {
			return true
		}
	}
	return false
}

// jsonHasField reports whether encoding/json writes at least one field of
// struct type t, following its rules for embedded fields.
func jsonHasField(t reflect.Type, seen map[reflect.Type]bool) bool {
	if seen[t] {
		return false
	}
	seen[t] = true
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		ft := f.Type
		if f.Anonymous && ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		switch {
		case f.Anonymous && !f.IsExported() && ft.Kind() != reflect.Struct:
			continue // ignored by encoding/json
		case !f.Anonymous && !f.IsExported():
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" && ft.Kind() == reflect.Struct {
			// Its fields are promoted.
			if jsonHasField(ft, seen) {
				return true
			}
			continue
		}
		return true
	}
	return false
}

// DefaultMaxDataSize is the payload size limit used when
// [RegistryOptions.MaxDataSize] is zero: 1 MiB.
const DefaultMaxDataSize = 1 << 20

// RegistryOptions configure a [Registry]. The zero value is valid and gives
// the defaults.
type RegistryOptions struct {
	// MaxDataSize is the largest payload, in bytes, that [Registry.Decode]
	// decodes and [Registry.Encode] produces. Zero means
	// DefaultMaxDataSize; there is no way to turn the limit off.
	MaxDataSize int

	// Source is the CloudEvents source [Registry.Encode] writes when the
	// attributes it is given have none, such as "/orders" or
	// "urn:example:billing".
	Source string

	// Codec is the registry's codec: the one [Registry.Encode] and
	// [Registry.Decode] use when given none, and the default of
	// [PublisherOptions.Codec] and [ConsumerOptions.Codec]. When it
	// implements [TypeChecker], [RegisterMessage] refuses the types it
	// cannot carry. Nil means [JSONCodec].
	Codec Codec
}

// Validate returns the problems of o joined, each wrapping
// [ErrInvalidArgument] and naming the field and the fix: a negative
// MaxDataSize, a Source that is not a valid CloudEvents source.
// [NewRegistry] panics with this error.
func (o *RegistryOptions) Validate() error {
	var p problems
	if o.MaxDataSize < 0 {
		p.add("RegistryOptions.MaxDataSize is %d; use 0 for the default (%d bytes) or a positive size", o.MaxDataSize, DefaultMaxDataSize)
	}
	if err := checkValue(attrSource, o.Source); err != nil {
		p.add("RegistryOptions.Source: %w", err)
	}
	return p.err()
}

func (o RegistryOptions) withDefaults() RegistryOptions {
	if o.MaxDataSize == 0 {
		o.MaxDataSize = DefaultMaxDataSize
	}
	if o.Codec == nil {
		o.Codec = JSONCodec{}
	}
	return o
}

// Registry maps wire message names to Go types, so that only registered
// names are ever decoded, and encodes and decodes messages in
// [Envelope]s.
//
// Create one with [NewRegistry] and register each message type that is
// stored or crosses a process with [RegisterMessage]. A Registry is safe for
// concurrent use, registering included; a registration takes effect for
// calls that start after it returns. It holds no resources and needs no
// closing.
type Registry struct {
	opts RegistryOptions

	mu     sync.RWMutex
	byName map[string]reflect.Type
	byType map[reflect.Type]string
}

// NewRegistry returns an empty Registry configured by opts: at most one
// *RegistryOptions, which may be nil; none gives the defaults. The
// registry keeps a copy. NewRegistry panics with an error wrapping
// [ErrInvalidArgument], naming each problem, if given more than one or
// invalid ones ([RegistryOptions.Validate]).
func NewRegistry(opts ...*RegistryOptions) *Registry {
	o := oneOptions("NewRegistry", opts)
	mustValid(o.Validate())
	return &Registry{
		opts:   o.withDefaults(),
		byName: map[string]reflect.Type{},
		byType: map[reflect.Type]string{},
	}
}

// RegisterMessage registers the message type T under the name its
// MessageName method returns. It panics with the error
// [RegisterMessageSafely] would return; use it at start-up, where a wrong
// registration is a programming error.
func RegisterMessage[T any](r *Registry) {
	mustRegister(RegisterMessageSafely[T](r))
}

// RegisterMessageSafely registers the message type T under the name its
// MessageName method returns on T's zero value.
//
// T must be a struct type (not a pointer) with a MessageName() string
// method on its value receiver that returns a non-empty name: wire names
// never come from Go type names, so that renaming a type does not break
// messages in flight. The registry's codec, when it is a [TypeChecker],
// must be able to carry T: with the default [JSONCodec], a struct whose
// fields are all unexported is refused, since it would travel as {}.
//
// It returns an error wrapping [ErrInvalidMessage] when T does not qualify
// (naming the fix), [ErrDuplicateMessage] when the name is already
// registered, and [ErrInvalidArgument] for a nil registry.
func RegisterMessageSafely[T any](r *Registry) error {
	t := reflect.TypeFor[T]()
	if r == nil {
		return fmt.Errorf("%w: RegisterMessage[%s] on a nil *Registry; create one with NewRegistry", ErrInvalidArgument, t)
	}
	name, err := wireName(t)
	if err != nil {
		return err
	}
	if err := checkType(r.opts.Codec, t); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if prev, ok := r.byName[name]; ok {
		if prev == t {
			return fmt.Errorf("%w: %s is already registered as %q", ErrDuplicateMessage, t, name)
		}
		return fmt.Errorf("%w: %q is the MessageName of both %s and %s; give each type its own name", ErrDuplicateMessage, name, prev, t)
	}
	r.byName[name] = t
	r.byType[t] = name
	return nil
}

// checkType asks codec, if it is a TypeChecker, whether it can carry
// values of t.
func checkType(codec Codec, t reflect.Type) error {
	tc, ok := codec.(TypeChecker)
	if !ok {
		return nil
	}
	if err := tc.CheckType(t); err != nil {
		return fmt.Errorf("%w: %s cannot carry %s: %w", ErrInvalidMessage, codecName(codec), t, err)
	}
	return nil
}

func codecName(c Codec) string { return fmt.Sprintf("the %T codec (%s)", c, c.ContentType()) }

type messageNamer interface{ MessageName() string }

// wireName returns the wire name of t, or why t cannot cross a process.
func wireName(t reflect.Type) (string, error) {
	if ti := newTypeInfo(t); ti.err != nil {
		return "", ti.err
	}
	nt := reflect.TypeFor[messageNamer]()
	if !t.Implements(nt) {
		if reflect.PointerTo(t).Implements(nt) {
			return "", invalidMessage("%s has MessageName on its pointer receiver; define func (%s) MessageName() string on the value receiver", t, t.Name())
		}
		return "", invalidMessage("%s has no MessageName method; add func (%s) MessageName() string returning its stable wire name (wire names never come from Go type names)", t, t.Name())
	}
	name := messageName(t)
	if name == "" {
		return "", invalidMessage("%s.MessageName returns \"\" (or panics) on the zero value; return a constant, non-empty name", t)
	}
	if err := checkValue(attrType, name); err != nil {
		return "", invalidMessage("%s.MessageName returns %q: %v", t, name, err)
	}
	return name, nil
}

// types returns the registered types, in no particular order.
func (r *Registry) types() []reflect.Type {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return slices.Collect(maps.Keys(r.byType))
}

// Lookup returns the Go type registered under the message name, and
// whether there is one. A nil Registry has no names.
func (r *Registry) Lookup(name string) (reflect.Type, bool) {
	if r == nil {
		return nil, false
	}
	r.mu.RLock()
	t, ok := r.byName[name]
	r.mu.RUnlock()
	return t, ok
}

// MaxDataSize returns the payload size limit in bytes.
func (r *Registry) MaxDataSize() int { return r.opts.MaxDataSize }

// Encode encodes msg with codec (nil means the registry's,
// [RegistryOptions.Codec]) and returns it in a new, valid Envelope.
//
// attrs, which may be nil, supplies the other attributes: its fields are
// copied, then Type is set to msg's registered name, SpecVersion to "1.0",
// DataContentType to the codec's content type and Data to the payload. An
// empty ID is generated with [NewID]; a zero Time becomes the current time
// in UTC; an empty Source becomes [RegistryOptions.Source]; an empty
// PartitionKey comes from msg's PartitionKey() string method if it has
// one; msg's Extensions() map[string]string method, if it has one, adds
// the extension attributes that attrs does not set. attrs is not modified
// or retained.
//
// It returns an error wrapping [ErrInvalidArgument] for a nil registry,
// [ErrUnknownMessage] when msg's type is not registered,
// [ErrInvalidMessage] for a nil message or a pointer,
// [ErrMessageTooLarge] when the payload exceeds the limit, the codec's error
// when it fails, and an error wrapping [ErrInvalidEnvelope] when the result
// is not valid, for example without a source.
func (r *Registry) Encode(msg any, codec Codec, attrs *Envelope) (*Envelope, error) {
	e := &Envelope{}
	if err := r.encode(e, msg, codec, attrs); err != nil {
		return nil, err
	}
	return e, nil
}

// encode is Encode into e, which it overwrites. attrs may be e itself.
func (r *Registry) encode(e *Envelope, msg any, codec Codec, attrs *Envelope) error {
	if r == nil {
		return fmt.Errorf("%w: Encode on a nil *Registry; create one with NewRegistry", ErrInvalidArgument)
	}
	if msg == nil {
		return invalidMessage("nil message")
	}
	if codec == nil {
		codec = r.opts.Codec
	}
	t := reflect.TypeOf(msg)
	r.mu.RLock()
	name, ok := r.byType[t]
	r.mu.RUnlock()
	if !ok {
		if t.Kind() == reflect.Pointer {
			r.mu.RLock()
			_, elemOK := r.byType[t.Elem()]
			r.mu.RUnlock()
			if elemOK {
				return invalidMessage("%s is a pointer; encode the %s value", t, t.Elem())
			}
		}
		return fmt.Errorf("%w: %s is not registered; register it with RegisterMessage[%s]", ErrUnknownMessage, t, t)
	}
	switch {
	case attrs == nil:
		*e = Envelope{}
	case attrs != e:
		*e = *attrs
		e.Extensions = maps.Clone(attrs.Extensions)
	}
	e.Type = name
	e.SpecVersion = SpecVersion
	e.DataContentType = codec.ContentType()
	if e.ID == "" {
		e.ID = NewID()
	}
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	if e.Source == "" {
		e.Source = r.opts.Source
		if e.Source == "" {
			return invalidEnvelope("no source for %s; set Envelope.Source in the attributes or RegistryOptions.Source", name)
		}
	}
	if e.PartitionKey == "" {
		if pk, ok := msg.(interface{ PartitionKey() string }); ok {
			e.PartitionKey = pk.PartitionKey()
		}
	}
	if x, ok := msg.(interface{ Extensions() map[string]string }); ok {
		// e.Extensions is e's own: cloned from attrs above, or nil.
		for name, v := range x.Extensions() {
			if _, set := e.Extensions[name]; !set {
				if e.Extensions == nil {
					e.Extensions = map[string]string{}
				}
				e.Extensions[name] = v
			}
		}
	}
	if err := e.Validate(); err != nil {
		return err
	}
	data, err := codec.Marshal(msg)
	if err != nil {
		return fmt.Errorf("mb: encode %s: %w", name, err)
	}
	if len(data) > r.opts.MaxDataSize {
		return fmt.Errorf("%w: %s encodes to %d bytes, more than the limit of %d", ErrMessageTooLarge, name, len(data), r.opts.MaxDataSize)
	}
	e.Data = data
	return nil
}

// Decode decodes env's payload with codec (nil means the registry's) into
// a new value of the type registered under env.Type and returns that value
// (a T, not a *T), ready to be dispatched.
//
// It returns an error wrapping [ErrInvalidArgument] for a nil registry,
// [ErrInvalidEnvelope] for a nil env, [ErrUnknownMessage] when env.Type is
// not a registered name (nothing is decoded), [ErrMessageTooLarge] when the
// payload exceeds the limit, and [ErrDecode] when the payload cannot be
// decoded: the codec fails or panics, or env.DataContentType names another
// media type than the codec's. Decode never panics on any input. It does
// not validate the other attributes; [EnvelopeFromHeaders] and
// [UnmarshalStructured] have done so. It does not retain env.
func (r *Registry) Decode(env *Envelope, codec Codec) (v any, err error) {
	if r == nil {
		return nil, fmt.Errorf("%w: Decode on a nil *Registry; create one with NewRegistry", ErrInvalidArgument)
	}
	if env == nil {
		return nil, invalidEnvelope("nil envelope")
	}
	if codec == nil {
		codec = r.opts.Codec
	}
	t, ok := r.Lookup(env.Type)
	if !ok {
		return nil, fmt.Errorf("%w: %q is not a registered message name", ErrUnknownMessage, env.Type)
	}
	if len(env.Data) > r.opts.MaxDataSize {
		return nil, fmt.Errorf("%w: %s payload is %d bytes, more than the limit of %d", ErrMessageTooLarge, env.Type, len(env.Data), r.opts.MaxDataSize)
	}
	if env.DataContentType != "" && !sameMediaType(env.DataContentType, codec.ContentType()) {
		return nil, fmt.Errorf("%w: %s: content type %q, but the codec decodes %q", ErrDecode, env.Type, env.DataContentType, codec.ContentType())
	}
	defer func() {
		if p := recover(); p != nil {
			v = nil
			err = fmt.Errorf("%w: %s: codec panicked: %w", ErrDecode, env.Type, newPanicError(p))
		}
	}()
	ptr := reflect.New(t)
	if err := codec.Unmarshal(env.Data, ptr.Interface()); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrDecode, env.Type, err)
	}
	return ptr.Elem().Interface(), nil
}

// sameMediaType reports whether a and b name the same media type, ignoring
// parameters and case; two JSON media types (see isJSONContentType) count
// as the same.
func sameMediaType(a, b string) bool {
	if a == b {
		return true
	}
	ta, _, errA := mime.ParseMediaType(a)
	tb, _, errB := mime.ParseMediaType(b)
	if errA != nil || errB != nil {
		return strings.EqualFold(a, b)
	}
	return ta == tb || (isJSONContentType(ta) && isJSONContentType(tb))
}
