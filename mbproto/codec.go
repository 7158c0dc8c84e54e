package mbproto

import (
	"errors"
	"fmt"
	"mime"
	"reflect"
	"sync"

	"github.com/mb-go/mb"
	"google.golang.org/protobuf/proto"
)

// DefaultContentType is the media type a [Codec] writes to
// Envelope.DataContentType, and the only one it decodes, unless
// [Options.ContentType] names another. It is the media type the CloudEvents
// protobuf format uses for protobuf data.
const DefaultContentType = "application/protobuf"

// ErrUnsupportedType is wrapped by the error [Codec.Marshal] and
// [Codec.Unmarshal] return for a value they cannot encode or decode into:
// a type that is not a protobuf message (see the package documentation for
// the types that are), a nil value, or, for Unmarshal, something other than
// a non-nil pointer. The error names the type and the fix. Test for it with
// [errors.Is]; through [mb.Registry.Decode] it comes wrapped in
// [mb.ErrDecode] too.
var ErrUnsupportedType = errors.New("mbproto: unsupported type")

// Options configure a [Codec]. The zero value, or nil, gives the defaults.
type Options struct {
	// ContentType is the media type the codec writes and decodes. Empty
	// means DefaultContentType ("application/protobuf"). Set it to
	// "application/x-protobuf" to exchange messages with producers or
	// consumers that use that name: [mb.Registry.Decode] decodes a
	// payload only when its data content type is the codec's media type
	// (parameters and case aside), so one codec decodes one of the two.
	ContentType string

	// Marshal is used to encode, as is. The zero value gives the output of
	// [proto.Marshal], which is not deterministic: map entries come in
	// random order, so equal messages may encode to different bytes. mb
	// encodes each message once (a retried publish, the outbox and a
	// dead letter carry the bytes already made), so nothing in mb needs
	// more; set Marshal.Deterministic when you compare or hash payloads.
	// Even then the bytes are stable only within one binary: protobuf
	// promises no canonical encoding across versions or languages.
	// Setting Marshal.UseCachedSize is invalid: the codec cannot know
	// that a cached size is current.
	Marshal proto.MarshalOptions

	// Unmarshal is used to decode, as is. The zero value gives the
	// behaviour of [proto.Unmarshal]: unknown fields are kept (so a
	// consumer that re-publishes a message passes on fields it does not
	// know), extensions are resolved with the global registry, and
	// nesting is limited to protowire.DefaultRecursionLimit levels. Set
	// Unmarshal.DiscardUnknown to drop unknown fields.
	Unmarshal proto.UnmarshalOptions
}

// Validate returns the problems of o joined, each wrapping
// [mb.ErrInvalidArgument] and naming the field and the fix: a ContentType
// that is not a media type, Marshal.UseCachedSize set. [New] panics with
// this error.
func (o *Options) Validate() error {
	var errs []error
	if o.ContentType != "" {
		if _, _, err := mime.ParseMediaType(o.ContentType); err != nil {
			errs = append(errs, fmt.Errorf("%w: mbproto: Options.ContentType %q is not a media type (%v); leave it empty for %q", mb.ErrInvalidArgument, o.ContentType, err, DefaultContentType))
		}
	}
	if o.Marshal.UseCachedSize {
		errs = append(errs, fmt.Errorf("%w: mbproto: Options.Marshal.UseCachedSize is set; the codec cannot know that a cached size is current, leave it false", mb.ErrInvalidArgument))
	}
	return errors.Join(errs...)
}

// Codec is an [mb.Codec] that encodes protobuf messages in their binary
// wire format with google.golang.org/protobuf. Use it as the Codec of
// [mb.PublisherOptions] and [mb.ConsumerOptions], or pass it to
// [mb.Registry.Encode] and [mb.Registry.Decode].
//
// It encodes and decodes registered message types of two forms (see the
// package documentation): a struct that embeds a pointer to a generated
// message, the recommended wrapper pattern, and a generated message type
// itself, used as a value. It caches what it learns about each type.
//
// Create one with [New]. The zero value is ready to use as well and
// behaves like New(nil). A Codec is safe for concurrent use, holds no
// resources and needs no closing; it must not be copied after first use.
type Codec struct {
	opts Options
	// types caches the typeInfo of each struct type seen, by reflect.Type.
	types sync.Map
}

var _ mb.Codec = (*Codec)(nil)

// New returns a Codec with the given options; opts may be nil for the
// defaults, and the Codec keeps a copy. It panics with the error of
// [Options.Validate] if the options are invalid: they are a programming
// error.
func New(opts *Options) *Codec {
	c := &Codec{}
	if opts != nil {
		c.opts = *opts
	}
	if err := c.opts.Validate(); err != nil {
		panic(err)
	}
	return c
}

// ContentType returns the media type of the payloads: Options.ContentType,
// or DefaultContentType when that is empty.
func (c *Codec) ContentType() string {
	if c.opts.ContentType == "" {
		return DefaultContentType
	}
	return c.opts.ContentType
}

// Marshal encodes v in the protobuf binary format with Options.Marshal.
//
// v is a wrapper value (a struct embedding a pointer to a generated
// message), a generated message value, or a non-nil pointer to either. A
// wrapper whose embedded pointer is nil encodes as the empty message, as
// protobuf treats a nil message, and decodes back to a wrapper holding a
// new, empty message. A nil pointer, a nil v and any other type are errors
// wrapping [ErrUnsupportedType]; errors of the protobuf library are
// returned as they are. A successful result is never nil: the empty
// message encodes as an empty, non-nil slice.
func (c *Codec) Marshal(v any) ([]byte, error) {
	if v == nil {
		return nil, fmt.Errorf("%w: cannot marshal nil; pass a protobuf message", ErrUnsupportedType)
	}
	rv := reflect.ValueOf(v)
	var m proto.Message
	switch {
	case rv.Kind() == reflect.Pointer && rv.IsNil():
		return nil, fmt.Errorf("%w: cannot marshal a nil %s; pass a message", ErrUnsupportedType, rv.Type())
	case rv.Kind() == reflect.Struct:
		// A wrapper value implements proto.Message through its embedded
		// pointer; a generated message value does not and is copied to
		// make it addressable.
		ti := c.info(rv.Type())
		switch ti.kind {
		case kindWrapper:
			var ok bool
			if m, ok = v.(proto.Message); !ok {
				// Another embedded field hides the promoted ProtoReflect.
				return nil, fmt.Errorf("%w: %s embeds %s but has no ProtoReflect method of its own; another embedded field makes the promoted one ambiguous", ErrUnsupportedType, rv.Type(), rv.Type().Field(ti.field).Type)
			}
		case kindGenerated:
			p := reflect.New(rv.Type())
			p.Elem().Set(rv)
			m = p.Interface().(proto.Message)
		default:
			return nil, ti.err
		}
	default:
		var ok bool
		if m, ok = v.(proto.Message); !ok {
			return nil, unsupported(rv.Type())
		}
	}
	b, err := c.opts.Marshal.Marshal(m)
	if err != nil {
		return nil, err
	}
	if b == nil {
		b = []byte{}
	}
	return b, nil
}

// Unmarshal decodes the protobuf binary data into the message v points to,
// with Options.Unmarshal.
//
// v is a non-nil pointer to a wrapper (a struct embedding a pointer to a
// generated message) or to a generated message; [mb.Registry.Decode]
// passes a pointer to a new value of the registered type. When the
// wrapper's embedded pointer is nil, Unmarshal sets it to a new message
// holding the decoded data, and leaves it nil if decoding fails. Otherwise
// the message is decoded into in place, which, as with [proto.Unmarshal],
// first resets it unless Options.Unmarshal.Merge is set.
//
// Invalid data is an error from the protobuf library; the wrong kind of v
// is an error wrapping [ErrUnsupportedType]. Unmarshal never panics on
// any data.
func (c *Codec) Unmarshal(data []byte, v any) error {
	rv := reflect.ValueOf(v)
	if v == nil || rv.Kind() != reflect.Pointer || rv.IsNil() {
		return fmt.Errorf("%w: Unmarshal needs a non-nil pointer to a message, got %s", ErrUnsupportedType, typeString(v))
	}
	et := rv.Type().Elem()
	if et.Kind() != reflect.Struct {
		return unsupported(rv.Type())
	}
	ti := c.info(et)
	switch ti.kind {
	case kindWrapper:
		f := rv.Elem().Field(ti.field)
		if !f.IsNil() {
			return c.opts.Unmarshal.Unmarshal(data, f.Interface().(proto.Message))
		}
		p := reflect.New(ti.elem)
		if err := c.opts.Unmarshal.Unmarshal(data, p.Interface().(proto.Message)); err != nil {
			return err
		}
		f.Set(p)
		return nil
	case kindGenerated:
		return c.opts.Unmarshal.Unmarshal(data, v.(proto.Message))
	default:
		return ti.err
	}
}

// kind says how the codec reaches the protobuf message of a struct type.
type kind uint8

const (
	kindInvalid   kind = iota // not a message: typeInfo.err says why
	kindWrapper               // a struct embedding one pointer to a message
	kindGenerated             // a message struct: its pointer is the message
)

// typeInfo is what the codec knows about a struct type T.
type typeInfo struct {
	kind  kind
	field int          // kindWrapper: index of the embedded pointer field
	elem  reflect.Type // kindWrapper: the struct type that pointer points to
	err   error        // kindInvalid: why T is not supported
}

// CheckType returns an error wrapping [ErrUnsupportedType] when the codec
// cannot carry values of t: t is neither a generated message nor a
// wrapper of one (see the package documentation). An [mb.Registry] whose
// codec this is calls it when a message type is registered.
func (c *Codec) CheckType(t reflect.Type) error {
	if t.Kind() != reflect.Struct {
		return unsupported(t)
	}
	return c.info(t).err
}

var _ mb.TypeChecker = (*Codec)(nil)

// info returns the typeInfo of the struct type t, computing it once.
func (c *Codec) info(t reflect.Type) *typeInfo {
	if ti, ok := c.types.Load(t); ok {
		return ti.(*typeInfo)
	}
	ti, _ := c.types.LoadOrStore(t, inspect(t))
	return ti.(*typeInfo)
}

var messageType = reflect.TypeFor[proto.Message]()

// inspect finds out how to reach the protobuf message of the struct type t.
func inspect(t reflect.Type) *typeInfo {
	// A wrapper embeds exactly one pointer to a message, directly.
	var fields []reflect.StructField
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Anonymous && f.Type.Kind() == reflect.Pointer && f.Type.Implements(messageType) {
			fields = append(fields, f)
		}
	}
	switch len(fields) {
	case 0:
	case 1:
		f := fields[0]
		if !f.IsExported() {
			return &typeInfo{err: fmt.Errorf("%w: %s embeds %s as an unexported field, which the codec cannot set when decoding; embed an exported message type", ErrUnsupportedType, t, f.Type)}
		}
		if f.Type.Elem().Kind() != reflect.Struct || inspect(f.Type.Elem()).kind != kindGenerated {
			return &typeInfo{err: fmt.Errorf("%w: %s embeds %s, which is not a generated protobuf message (a wrapper of one, perhaps); embed the generated message pointer itself", ErrUnsupportedType, t, f.Type)}
		}
		return &typeInfo{kind: kindWrapper, field: f.Index[0], elem: f.Type.Elem()}
	default:
		return &typeInfo{err: fmt.Errorf("%w: %s embeds %d protobuf messages (%s and %s); a wrapper embeds exactly one", ErrUnsupportedType, t, len(fields), fields[0].Type, fields[1].Type)}
	}
	if reflect.PointerTo(t).Implements(messageType) {
		return &typeInfo{kind: kindGenerated}
	}
	return &typeInfo{err: unsupported(t)}
}

// unsupported is the error for a type that is not a protobuf message.
func unsupported(t reflect.Type) error {
	return fmt.Errorf("%w: %s is not a protobuf message; embed the generated message pointer in a wrapper struct, as in type %s struct{ *pb.%s } with func (%s) MessageName() string", ErrUnsupportedType, t, wrapperName(t), wrapperName(t), wrapperName(t))
}

// wrapperName suggests the name of a wrapper for t.
func wrapperName(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Name() != "" {
		return t.Name()
	}
	return "Event"
}

func typeString(v any) string {
	if v == nil {
		return "nil"
	}
	return reflect.TypeOf(v).String()
}
