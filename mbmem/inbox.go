package mbmem

import (
	"context"
	"sync"

	"github.com/mb-go/mb"
)

// Inbox is an in-memory [mb.Inbox]: it remembers which handlings took
// effect, so that a consumer gives a redelivered message no second effect.
// Give it to a consumer as ConsumerOptions.Inbox.
//
// A claim is held while the handler's unit of work runs, kept when the
// unit commits and released when it rolls back (see
// [mb.InboxFromClaimer], over [Claims]); a claim of a handling that is in
// progress elsewhere reports an error wrapping [mb.ErrInFlight]. What it
// remembers is lost with the process: use a database inbox (packages
// mbsql and mbpgx) where handlings must be remembered across restarts.
//
// The zero value is an empty Inbox ready to use. An Inbox is safe for
// concurrent use and must not be copied after first use.
type Inbox struct {
	claims Claims
	once   sync.Once
	inbox  mb.Inbox
}

// Claim claims the handling key; see [mb.Inbox].
func (i *Inbox) Claim(ctx context.Context, key mb.InboxKey) (bool, error) {
	i.once.Do(func() { i.inbox = mb.InboxFromClaimer(&i.claims) })
	return i.inbox.Claim(ctx, key)
}

// Seen reports whether the handling key took effect: its unit committed.
func (i *Inbox) Seen(key mb.InboxKey) bool { return i.claims.Seen(key.String()) }

// Len returns the number of handlings that took effect.
func (i *Inbox) Len() int { return i.claims.Len() }

// Claims is an in-memory store of claimed keys, an [mb.KeyClaimer]: the
// store behind [Inbox], for building other inboxes with
// [mb.InboxFromClaimer]. It does not interpret keys.
//
// A key is in one of three states: unknown, claimed (being handled) or
// committed (handled). Committed keys are kept for the store's lifetime.
//
// The zero value is an empty store ready to use. Claims is safe for
// concurrent use and must not be copied after first use.
type Claims struct {
	mu        sync.Mutex
	claimed   map[string]struct{}
	committed map[string]struct{}
}

// Claim claims key for handling. It reports ok=false, with a nil release,
// when key is already committed or currently claimed by another caller
// (in flight). Otherwise key is claimed, and the caller must call release
// exactly once when done: release(true) commits key (later Claims fail and
// Seen reports true), release(false) frees it (the next Claim succeeds,
// e.g. for a retry). Calls of release after the first do nothing.
func (i *Claims) Claim(key string) (release func(commit bool), ok bool) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if _, ok := i.committed[key]; ok {
		return nil, false
	}
	if _, ok := i.claimed[key]; ok {
		return nil, false
	}
	if i.claimed == nil {
		i.claimed = make(map[string]struct{})
	}
	i.claimed[key] = struct{}{}
	var once sync.Once
	return func(commit bool) {
		once.Do(func() {
			i.mu.Lock()
			defer i.mu.Unlock()
			delete(i.claimed, key)
			if commit {
				if i.committed == nil {
					i.committed = make(map[string]struct{})
				}
				i.committed[key] = struct{}{}
			}
		})
	}, true
}

// Seen reports whether key is committed. A key that is only claimed (in
// flight) is not seen.
func (i *Claims) Seen(key string) bool {
	i.mu.Lock()
	defer i.mu.Unlock()
	_, ok := i.committed[key]
	return ok
}

// Len returns the number of committed keys.
func (i *Claims) Len() int {
	i.mu.Lock()
	defer i.mu.Unlock()
	return len(i.committed)
}
