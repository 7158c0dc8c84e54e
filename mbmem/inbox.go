package mbmem

import "sync"

// Inbox is an in-memory inbox store: it remembers which message keys were
// handled, so that a consumer can give a redelivered message no second
// effect. A key is typically the consumer group and the message id, e.g.
// group + "\x00" + id; the Inbox does not interpret it.
//
// A key is in one of three states: unknown, claimed (being handled) or
// committed (handled). Committed keys are kept for the Inbox's lifetime.
//
// The zero value is an empty Inbox ready to use. An Inbox is safe for
// concurrent use and must not be copied after first use.
type Inbox struct {
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
func (i *Inbox) Claim(key string) (release func(commit bool), ok bool) {
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
func (i *Inbox) Seen(key string) bool {
	i.mu.Lock()
	defer i.mu.Unlock()
	_, ok := i.committed[key]
	return ok
}

// Len returns the number of committed keys.
func (i *Inbox) Len() int {
	i.mu.Lock()
	defer i.mu.Unlock()
	return len(i.committed)
}
