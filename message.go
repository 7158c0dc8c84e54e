package mb

import (
	"context"
	"maps"
	"reflect"
	"sync/atomic"
	"time"
	"unsafe"
)

// Kind tells what sort of message a handler is handling.
type Kind uint8

// The kinds of messages.
const (
	KindCommand Kind = iota + 1 // handled by exactly one handler, in a unit of work
	KindQuery                   // handled by exactly one handler, without a unit of work
	KindStream                  // a streaming query
	KindEvent                   // handled by zero or more handlers, each in its own unit of work
)

// String returns "command", "query", "stream" or "event".
func (k Kind) String() string {
	switch k {
	case KindCommand:
		return "command"
	case KindQuery:
		return "query"
	case KindStream:
		return "stream"
	case KindEvent:
		return "event"
	}
	return "unknown"
}

// Message is what middleware sees of the message being handled. The bus
// creates it for each handling; middleware may read it and may replace Body
// with a value of the same type before calling the next handler. It must not
// be retained after the handler returns.
type Message struct {
	// Kind is the kind of message.
	Kind Kind
	// Name is the message name: the result of its MessageName method if it
	// has one, otherwise its Go type name.
	Name string
	// Handler is the name of the handler that will run: the name given
	// with [WithName] or the Go function name.
	Handler string
	// Body is the command, query or event value.
	Body any

	meta *meta
}

// ID returns the message id, a UUIDv7 generated on first use unless the
// message arrived with one. All handlers of one event see the same id.
func (m *Message) ID() string { return m.meta.ID() }

// CorrelationID returns the id of the root of the business flow this message
// belongs to: inherited from the message being handled when this one was
// sent or emitted, or set with [WithCorrelationID], otherwise the message's
// own id.
func (m *Message) CorrelationID() string { return m.meta.correlation() }

// CausationID returns the id of the message whose handler sent or emitted
// this one, or "" for a message sent from outside any handler.
func (m *Message) CausationID() string { return m.meta.causation() }

// Metadata returns a copy of the message's identity.
func (m *Message) Metadata() Metadata {
	return m.meta.metadata(m.Kind, m.Name, m.Handler)
}

// Metadata is the identity of the message being handled; see [MetadataFrom].
type Metadata struct {
	Kind          Kind
	Name          string
	Handler       string
	ID            string
	CorrelationID string
	CausationID   string
	// Source is the CloudEvents source of an event that arrived from
	// another process through a [Consumer]; "" for messages sent or
	// emitted in this process. Together with ID it identifies the event.
	Source string
	// Extensions holds the CloudEvents extension attributes an event
	// arrived with through a [Consumer] (those without a field of their
	// own in [Envelope]), such as a peer library's message type; nil for
	// messages of this process. The map is a copy.
	Extensions map[string]string
}

// MetadataFrom returns the metadata of the message whose handler ctx belongs
// to. It reports false outside any handler.
func MetadataFrom(ctx context.Context) (Metadata, bool) {
	f := frameFrom(ctx)
	if f == nil {
		return Metadata{}, false
	}
	kind, name := f.describe()
	return f.meta().metadata(kind, name, f.e.handler), true
}

type correlationKey struct{}

// WithCorrelationID returns a context whose messages sent or published from
// outside any handler take id as their correlation id, for example the
// request id of an incoming HTTP request. Inside a handler the correlation id
// of the message being handled takes precedence.
func WithCorrelationID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, correlationKey{}, &incoming{correlation: id})
}

// correlationFrom returns the identity that carries the correlation id ctx
// was given with WithCorrelationID, or nil.
func correlationFrom(ctx context.Context) *incoming {
	if in, ok := ctx.Value(correlationKey{}).(*incoming); ok && in.correlation != "" {
		return in
	}
	return nil
}

// meta is the identity of one message, kept to three words because every
// unit of work and every event record holds one. The id is generated
// lazily so that a message nobody asks about costs no clock read and no
// allocation.
type meta struct {
	id    atomic.Pointer[string] // set on first use, or at once for an event that arrived with one
	cause *meta                  // the message whose handler produced this one
	// given is the identity given from outside this process's handlers:
	// that of an event that arrived from a transport, or only the
	// correlation id of a context (WithCorrelationID). Nil for others.
	given *incoming
}

// generatedID is a generated id and the bytes it is made of: one
// allocation.
type generatedID struct {
	s string
	b [idLen]byte
}

// ID returns m's id, generating it on first use. Safe for concurrent use:
// racing callers agree on one id.
func (m *meta) ID() string {
	if id := m.id.Load(); id != nil {
		return *id
	}
	g := new(generatedID)
	formatIDTo(&g.b, newIDBytes(time.Now()))
	g.s = unsafe.String(&g.b[0], len(g.b))
	if m.id.CompareAndSwap(nil, &g.s) {
		return g.s
	}
	return *m.id.Load()
}

func (m *meta) correlation() string {
	if m.given != nil && m.given.correlation != "" {
		return m.given.correlation
	}
	if m.cause != nil {
		return m.cause.correlation()
	}
	return m.ID()
}

// metadata returns m with the rest of a message's identity.
func (m *meta) metadata(kind Kind, name, handler string) Metadata {
	return Metadata{
		Kind:          kind,
		Name:          name,
		Handler:       handler,
		ID:            m.ID(),
		CorrelationID: m.correlation(),
		CausationID:   m.causation(),
		Source:        m.source(),
		Extensions:    m.extensions(),
	}
}

func (m *meta) source() string {
	if m.given == nil {
		return ""
	}
	return m.given.source
}

func (m *meta) extensions() map[string]string {
	if m.given == nil || len(m.given.extensions) == 0 {
		return nil
	}
	return maps.Clone(m.given.extensions)
}

func (m *meta) causation() string {
	if m.cause != nil {
		return m.cause.ID()
	}
	if m.given != nil {
		return m.given.causation
	}
	return ""
}

// inherit links m to whatever message ctx is handling, or to a correlation
// id put there with WithCorrelationID.
func (m *meta) inherit(ctx context.Context, f *frame) {
	if f != nil {
		m.cause = f.meta()
		return
	}
	m.given = correlationFrom(ctx)
}

// typeKey identifies a Go type in the handler tables: the address of its
// type descriptor, the word a reflect.Type or an interface value holds.
// Maps hash it as a plain pointer, where a reflect.Type key is hashed
// through its interface. Type descriptors are never freed, so the address
// stands for the type for the life of the program.
type typeKey unsafe.Pointer

// keyOf returns the typeKey of t.
func keyOf(t reflect.Type) typeKey {
	return typeKey((*[2]unsafe.Pointer)(unsafe.Pointer(&t))[1])
}

// typeInfo is what the bus knows about a message type; computed once per
// type and bus.
type typeInfo struct {
	typ   reflect.Type
	key   typeKey
	name  string
	keyed bool  // it has a DedupKey method
	keeps bool  // it has a DispatchOnRollback method
	err   error // why values of this type cannot be messages, if they cannot
}

func newTypeInfo(t reflect.Type) *typeInfo {
	ti := &typeInfo{
		typ: t, key: keyOf(t), name: t.String(),
		keyed: t.Implements(reflect.TypeFor[dedupKeyer]()),
		keeps: t.Implements(reflect.TypeFor[rollbackKeeper]()),
	}
	switch {
	case t.Kind() == reflect.Pointer && t.Elem().Kind() == reflect.Struct:
		ti.err = invalidMessage("%s is a pointer; messages are struct values, use %s", t, t.Elem())
		return ti
	case t.Kind() != reflect.Struct:
		ti.err = invalidMessage("%s is a %s; messages are struct values", t, t.Kind())
		return ti
	}
	if name := messageName(t); name != "" {
		ti.name = name
	}
	return ti
}

// messageName calls the MessageName method of t's zero value, if t has one.
// The name must not depend on the value; a method that panics on the zero
// value leaves the Go type name in use.
func messageName(t reflect.Type) (name string) {
	defer func() {
		if recover() != nil {
			name = ""
		}
	}()
	if n, ok := reflect.Zero(t).Interface().(interface{ MessageName() string }); ok {
		return n.MessageName()
	}
	return ""
}
