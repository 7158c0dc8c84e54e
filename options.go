package mb

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"time"
)

// problems collects what is wrong with one options value: each problem
// wraps ErrInvalidArgument and names the field and the fix.
type problems []error

func (p *problems) add(format string, args ...any) {
	*p = append(*p, fmt.Errorf("%w: "+format, append([]any{ErrInvalidArgument}, args...)...))
}

func (p problems) err() error { return errors.Join(p...) }

// oneOptions returns a copy of the options given to fn, a set-up function
// that takes them variadically: the zero value for none or nil. More than
// one panics.
func oneOptions[T any](fn string, opts []*T) T {
	var o T
	switch {
	case len(opts) > 1:
		panic(fmt.Errorf("%w: %s takes at most one *%s", ErrInvalidArgument, fn, reflect.TypeFor[T]().Name()))
	case len(opts) == 1 && opts[0] != nil:
		o = *opts[0]
	}
	return o
}

// mustValid panics with err, the Validate error of options given to a
// set-up function that has no error result.
func mustValid(err error) {
	if err != nil {
		panic(err)
	}
}

// Backoff is how long to wait before trying again: after the n-th failure
// (n ≥ 1) the wait is Min·Multiplier^(n-1), capped at Max, of which a
// uniformly random point in the upper half is taken ("equal jitter"), so
// that many clients failing together do not retry together. Zero fields
// take the defaults of where the Backoff is used; a zero Multiplier means
// 2. Every wait of mb (retries of handlers, of publishing, of consuming
// and reconnects) is a Backoff.
type Backoff struct {
	// Min is the wait after the first failure.
	Min time.Duration
	// Max caps the wait.
	Max time.Duration
	// Multiplier grows the wait after each failure; at least 1.
	Multiplier float64
}

// Validate returns the problems of b joined, each wrapping
// [ErrInvalidArgument]: a negative duration, a Multiplier below 1 (other
// than 0), or a Max below Min.
func (b Backoff) Validate() error {
	var p problems
	b.check(&p, "Backoff")
	return p.err()
}

// check adds b's problems to p, naming b's fields after field.
func (b Backoff) check(p *problems, field string) {
	if b.Min < 0 {
		p.add("%s.Min is %v; use 0 for the default or a positive duration", field, b.Min)
	}
	if b.Max < 0 {
		p.add("%s.Max is %v; use 0 for the default or a positive duration", field, b.Max)
	}
	if b.Max > 0 && b.Max < b.Min {
		p.add("%s.Max (%v) is below Min (%v); raise Max or lower Min", field, b.Max, b.Min)
	}
	if b.Multiplier != 0 && !(b.Multiplier >= 1) {
		p.add("%s.Multiplier is %v; use 0 for the default (2) or a value of at least 1", field, b.Multiplier)
	}
}

// withDefaults fills zero fields: Min and Max with minD and maxD (Max is
// at least Min), Multiplier with 2.
func (b Backoff) withDefaults(minD, maxD time.Duration) Backoff {
	if b.Min == 0 {
		b.Min = minD
	}
	if b.Max == 0 {
		b.Max = max(maxD, b.Min)
	}
	if b.Multiplier == 0 {
		b.Multiplier = 2
	}
	return b
}

// Delay returns the wait after the n-th failure (n ≥ 1). Zero fields are
// taken as Min 0, Max Min and Multiplier 2.
func (b Backoff) Delay(n int) time.Duration {
	mult := b.Multiplier
	if mult == 0 {
		mult = 2
	}
	limit := float64(max(b.Max, b.Min))
	d := float64(b.Min)
	for i := 1; i < n && d < limit; i++ {
		d *= mult
	}
	d = min(d, limit)
	if d <= 0 {
		return 0
	}
	half := d / 2
	return time.Duration(half + rand.Float64()*half)
}
