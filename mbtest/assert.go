package mbtest

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/mb-go/mb"
)

// The assertions report a failure with t.Errorf, so a test goes on and
// reports every failed assertion; each returns whether it passed. Values
// are compared with reflect.DeepEqual and shown as Go type and %+v (%#v
// when that is not enough to tell them apart). They read the recorder at
// the time of the call: dispatch happens before mb.Send and mb.Publish
// return, so call them after those calls.

// AssertEvents checks that exactly the events want were dispatched, in this
// order, and reports a diff of the expected and the recorded events if not.
// With no want it is [AssertNoEvents].
func AssertEvents(t testing.TB, rec *Recorder, want ...any) bool {
	t.Helper()
	got := bodies(rec.Events())
	if len(got) == len(want) {
		equal := true
		for i := range got {
			if !reflect.DeepEqual(got[i], want[i]) {
				equal = false
				break
			}
		}
		if equal {
			return true
		}
	}
	t.Errorf("mbtest.AssertEvents: got %d %s, want %d (-want +got):\n%s",
		len(got), plural(len(got), "event", "events"), len(want), diff(want, got))
	return false
}

// AssertEventEmitted checks that exactly one event of type T was dispatched
// and returns it. With none it reports the events that were dispatched and
// returns the zero T; with several it reports them and returns the first.
// T may be an interface type, matching every event that implements it.
func AssertEventEmitted[T any](t testing.TB, rec *Recorder) T {
	t.Helper()
	events := rec.Events()
	var found []any
	for _, e := range events {
		if _, ok := e.Body.(T); ok {
			found = append(found, e.Body)
		}
	}
	name := reflect.TypeFor[T]().String()
	switch len(found) {
	case 1:
		return found[0].(T)
	case 0:
		t.Errorf("mbtest.AssertEventEmitted: no %s event was dispatched; dispatched events:\n%s",
			name, formatValues(bodies(events)))
		var zero T
		return zero
	default:
		t.Errorf("mbtest.AssertEventEmitted: %d %s events were dispatched, want exactly one:\n%s",
			len(found), name, formatValues(found))
		return found[0].(T)
	}
}

// AssertNoEvents checks that no event was dispatched, and lists those that
// were if not.
func AssertNoEvents(t testing.TB, rec *Recorder) bool {
	t.Helper()
	events := rec.Events()
	if len(events) == 0 {
		return true
	}
	t.Errorf("mbtest.AssertNoEvents: %d %s dispatched, want none:\n%s",
		len(events), plural(len(events), "event was", "events were"), formatValues(bodies(events)))
	return false
}

// AssertNoErrors checks that no handler recorded by rec returned an error or
// panicked, and that no error was reported to [Recorder.ErrorHandler]; it
// lists them if not. It marks the reported errors as read (see
// [Recorder.Errors]), so that [NewBus] does not report them again.
func AssertNoErrors(t testing.TB, rec *Recorder) bool {
	t.Helper()
	handled := rec.Handled()
	reported := rec.Errors()
	var lines []string
	for _, h := range handled {
		if h.Err != nil {
			lines = append(lines, fmt.Sprintf("    %s %s: handler %s: %v", h.Kind, h.Name, h.Handler, h.Err))
		}
	}
	for _, err := range reported {
		if !alreadyListed(err, handled) {
			lines = append(lines, fmt.Sprintf("    reported to ErrorHandler: %v", err))
		}
	}
	if len(lines) == 0 {
		return true
	}
	t.Errorf("mbtest.AssertNoErrors: got %d %s, want none:\n%s",
		len(lines), plural(len(lines), "error", "errors"), strings.Join(lines, "\n"))
	return false
}

// alreadyListed reports whether err is the report of an event handler
// failure that is also in handled.
func alreadyListed(err error, handled []Handling) bool {
	var he *mb.HandlerError
	if !errors.As(err, &he) {
		return false
	}
	for _, h := range handled {
		if h.Err != nil && h.Kind == he.Kind && h.ID == he.ID && h.Handler == he.Handler {
			return true
		}
	}
	return false
}

// AssertHandled checks that the handler named handler ran and succeeded at
// least once. The name is the handler's name as mb reports it (the one
// given with mb.WithName, otherwise "pkg.Func", as in
// "users.sendWelcomeEmail"), with or without the package qualifier. If the
// handler did not run, AssertHandled lists the handlers that did; if it
// only failed, it lists its errors.
func AssertHandled(t testing.TB, rec *Recorder, handler string) bool {
	t.Helper()
	handled := rec.Handled()
	var failed []string
	for _, h := range handled {
		if !handlerIs(h.Handler, handler) {
			continue
		}
		if h.Err == nil {
			return true
		}
		failed = append(failed, fmt.Sprintf("    %s %s: %v", h.Kind, h.Name, h.Err))
	}
	if len(failed) > 0 {
		t.Errorf("mbtest.AssertHandled: handler %s ran %d %s and failed each time:\n%s",
			handler, len(failed), plural(len(failed), "time", "times"), strings.Join(failed, "\n"))
		return false
	}
	var ran []string
	for _, h := range handled {
		ran = append(ran, fmt.Sprintf("    %s %s: handler %s", h.Kind, h.Name, h.Handler))
	}
	if len(ran) == 0 {
		ran = []string{"    (none)"}
	}
	t.Errorf("mbtest.AssertHandled: handler %s did not run; handlers that ran:\n%s", handler, strings.Join(ran, "\n"))
	return false
}

// handlerIs reports whether the handler name got is want, or is want
// qualified with a package name.
func handlerIs(got, want string) bool {
	if got == want {
		return true
	}
	_, rest, ok := strings.Cut(got, ".")
	return ok && rest == want
}

func bodies(events []Event) []any {
	out := make([]any, len(events))
	for i, e := range events {
		out[i] = e.Body
	}
	return out
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// formatValue shows v with its type: mbtest_test.UserCreated{Username:me}.
func formatValue(v any, goSyntax bool) string {
	if v == nil {
		return "nil"
	}
	if goSyntax {
		return fmt.Sprintf("%#v", v)
	}
	return fmt.Sprintf("%T%+v", v, v)
}

func formatValues(vs []any) string {
	if len(vs) == 0 {
		return "    (none)"
	}
	lines := make([]string, len(vs))
	for i, v := range vs {
		lines[i] = "    " + formatValue(v, false)
	}
	return strings.Join(lines, "\n")
}

func formatErrors(errs []error) string {
	lines := make([]string, len(errs))
	for i, err := range errs {
		lines[i] = fmt.Sprintf("    %v", err)
	}
	return strings.Join(lines, "\n")
}

// diff returns a line diff of want and got, one value a line, marking the
// values only in want with "-" and those only in got with "+", aligned on
// their longest common subsequence.
func diff(want, got []any) string {
	n, m := len(want), len(got)
	// lcs[i][j] is the length of the longest common subsequence of
	// want[i:] and got[j:].
	lcs := make([][]int, n+1)
	for i := range lcs {
		lcs[i] = make([]int, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if reflect.DeepEqual(want[i], got[j]) {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	type line struct {
		op byte
		v  any
	}
	var lines []line
	for i, j := 0, 0; i < n || j < m; {
		switch {
		case i < n && j < m && reflect.DeepEqual(want[i], got[j]):
			lines = append(lines, line{' ', got[j]})
			i++
			j++
		case i < n && (j == m || lcs[i+1][j] >= lcs[i][j+1]):
			lines = append(lines, line{'-', want[i]})
			i++
		default:
			lines = append(lines, line{'+', got[j]})
			j++
		}
	}
	// Values that differ but print the same (unexported fields, pointers,
	// types with a String method) need Go syntax to be told apart. Equal
	// values that moved print the same too, and need nothing.
	goSyntax := false
	removed := map[string][]any{}
	for _, l := range lines {
		if l.op == '-' {
			text := formatValue(l.v, false)
			removed[text] = append(removed[text], l.v)
		}
	}
same:
	for _, l := range lines {
		if l.op != '+' {
			continue
		}
		for _, v := range removed[formatValue(l.v, false)] {
			if !reflect.DeepEqual(v, l.v) {
				goSyntax = true
				break same
			}
		}
	}
	out := make([]string, len(lines))
	for k, l := range lines {
		out[k] = fmt.Sprintf("    %c %s", l.op, formatValue(l.v, goSyntax))
	}
	if len(out) == 0 {
		return "    (none)"
	}
	return strings.Join(out, "\n")
}
