package mb

import (
	"context"
	"errors"
	"fmt"
)

// InboxKey identifies one handling of one message (by its source and id)
// by one handler of one consumer group. An [Inbox] records it so that a
// redelivered message has no second effect.
type InboxKey struct {
	// Group is the consumer group ([ConsumerOptions.Group]).
	Group string
	// Handler is the handler name: the name given with [WithName] or the
	// Go function name. Give handlers of consumed events a stable name
	// with WithName: a function name changes when code is refactored, and
	// a [Consumer] refuses the names generated for function literals.
	Handler string
	// Source is the message's CloudEvents source. CloudEvents makes an id
	// unique per source only, so two producers may send different events
	// with the same id: the key tells them apart.
	Source string
	// MessageID is the message's CloudEvents id.
	MessageID string
}

// String returns the key as one string, for stores keyed by a single
// string: Group, Handler, Source and MessageID joined by NUL bytes, which
// none of them contains (envelope attributes cannot hold control
// characters).
func (k InboxKey) String() string {
	return k.Group + "\x00" + k.Handler + "\x00" + k.Source + "\x00" + k.MessageID
}

// Inbox remembers which handlings have already taken effect. The [Consumer]
// calls Claim inside each handler's unit of work, with the handler's
// context, before the handler and its middleware run:
//
//   - true: the handling is new; the handler runs. The claim must take
//     effect if and only if the unit commits. A SQL inbox inserts the key in
//     the unit's transaction ([TxFrom]), e.g. INSERT ... ON CONFLICT DO
//     NOTHING, and reports whether a row was inserted; a store outside the
//     transaction registers [AfterCommit] and [AfterRollback] hooks to
//     commit or release its claim.
//   - false: the handling already took effect; the handler is skipped and
//     counts as a success.
//   - an error wrapping [ErrInFlight]: the same handling is in progress
//     elsewhere (the broker redelivered the message while another worker
//     or process still handles it). Whether it will take effect is not
//     known yet, so the message is neither acknowledged nor counted as
//     failed: it is tried again after the consumer's minimum backoff. A
//     store that makes a second claim wait for the first one's outcome (a
//     unique key inserted in a transaction does) never needs this.
//   - another error: the unit rolls back and the handling counts as
//     failed; it is retried like a handler error.
//
// Claims are per handler, so that when one handler of a message fails and
// the message is retried, only the handlers that failed run again.
// Implementations must be safe for concurrent use.
type Inbox interface {
	Claim(ctx context.Context, key InboxKey) (bool, error)
}

// InboxFunc adapts a function to an [Inbox].
type InboxFunc func(ctx context.Context, key InboxKey) (bool, error)

// Claim calls f.
func (f InboxFunc) Claim(ctx context.Context, key InboxKey) (bool, error) { return f(ctx, key) }

// ErrInFlight is wrapped by the error an [Inbox] returns when the handling
// it is asked to claim is in progress elsewhere; see [Inbox].
var ErrInFlight = errors.New("mb: inbox: the same handling is in progress elsewhere")

// KeyClaimer is a non-transactional store of claimed keys, such as the
// Claims type of package mbmem. Claim reports false when key is
// claimed already (committed, or held by another handling); otherwise the
// key is held until release is called once: release(true) makes the claim
// permanent, release(false) gives the key up. Seen reports whether key is
// committed, which tells the two cases of a failed Claim apart.
type KeyClaimer interface {
	Claim(key string) (release func(commit bool), ok bool)
	Seen(key string) bool
}

// InboxFromClaimer returns an [Inbox] over c, keyed by [InboxKey.String]. A
// claim is committed after the handler's unit of work commits and released
// when it rolls back (see [AfterCommit] and [AfterRollback]), which gives
// the transactional behaviour of a SQL inbox in memory, except that a crash
// between commit and release loses the claim. A key held by a handling
// that has not ended yields an error wrapping [ErrInFlight].
func InboxFromClaimer(c KeyClaimer) Inbox {
	if c == nil {
		panic(fmt.Errorf("%w: InboxFromClaimer(nil)", ErrInvalidArgument))
	}
	return InboxFunc(func(ctx context.Context, key InboxKey) (bool, error) {
		k := key.String()
		release, ok := c.Claim(k)
		if !ok {
			if c.Seen(k) {
				return false, nil
			}
			// Held by a handling that has not ended: it may still fail.
			return false, fmt.Errorf("%w: message %q, handler %q", ErrInFlight, key.MessageID, key.Handler)
		}
		if release == nil {
			return true, nil
		}
		err := errors.Join(
			AfterRollback(ctx, func(context.Context) { release(false) }),
			AfterCommit(ctx, func(context.Context) { release(true) }),
		)
		if err != nil {
			// Outside a unit of work there is nothing to tie the claim
			// to: give it up rather than hold it forever.
			release(false)
			return false, err
		}
		return true, nil
	})
}
