package mbstoretest_test

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/mb-go/mb/mbstoretest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The in-memory fake store passes both suites.
func TestFakeStore(t *testing.T) {
	h := fakeHarness("")
	t.Run("Transactor", func(t *testing.T) { mbstoretest.RunTransactor(t, h) })
	t.Run("Inbox", func(t *testing.T) { mbstoretest.RunInbox(t, h) })
}

// mutationEnv names the defect TestBrokenStore injects.
const mutationEnv = "MBSTORETEST_MUTATION"

// The suites catch broken stores: each defect of the fake must fail the
// named subtest. The suite runs in a child process because a failing
// *testing.T cannot be observed in-process.
func TestSuiteCatchesBugs(t *testing.T) {
	if testing.Short() {
		t.Skip("runs child processes")
	}
	for _, tc := range []struct{ mutation, subtest string }{
		{"commit-drops", "Transactor/Commit"},
		{"rollback-applies", "Transactor/RollbackError"},
		{"rollback-applies", "Transactor/RollbackPanic"},
		{"rollback-applies", "Transactor/RollbackBeforeCommit"},
		{"savepoint-noop", "Transactor/NestedRollback"},
		{"savepoint-noop", "Transactor/NestedBegin"},
		{"savepoint-noop", "Transactor/SavepointNames"},
		{"dirty-read", "Transactor/Commit"},
		{"dirty-read", "Transactor/Concurrent"},
		{"read-only-ignored", "Transactor/ReadOnly"},
		{"read-committed-always", "Transactor/Isolation/RepeatableRead"},
		{"read-committed-always", "Transactor/Isolation/Serializable"},
		{"inbox-never-dup", "Inbox/ClaimCommit"},
		{"inbox-never-dup", "Inbox/ConsumerDuplicate"},
		{"inbox-outside-tx", "Inbox/ClaimRollback"},
		{"inbox-outside-tx", "Inbox/ConcurrentRollback"},
		{"inbox-ignore-source", "Inbox/KeyFields"},
		{"inbox-case-fold", "Inbox/KeyFields"},
		{"inbox-no-unit", "Inbox/ClaimOutsideUnit"},
		{"inbox-no-wait", "Inbox/ConcurrentCommit"},
		{"inbox-in-flight", "Inbox/ConcurrentCommit"},
		{"commit-drops", "Inbox/ClaimCommit"},
	} {
		t.Run(tc.mutation+"/"+tc.subtest, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			run := "^TestBrokenStore$"
			for _, part := range strings.Split(tc.subtest, "/") {
				run += "/^" + part + "$"
			}
			cmd := exec.CommandContext(ctx, os.Args[0], "-test.run="+run, "-test.v", "-test.count=1")
			cmd.Env = append(os.Environ(), mutationEnv+"="+tc.mutation)
			out, err := cmd.CombinedOutput()
			want := "--- FAIL: TestBrokenStore/" + tc.subtest
			if err == nil || !strings.Contains(string(out), want) {
				t.Errorf("with mutation %q the suite did not fail %s (err %v):\n%s", tc.mutation, tc.subtest, err, out)
			}
		})
	}
}

// TestBrokenStore runs the suites against a broken fake, in the child
// process of TestSuiteCatchesBugs.
func TestBrokenStore(t *testing.T) {
	m := os.Getenv(mutationEnv)
	if m == "" {
		t.Skip(mutationEnv + " not set: run by TestSuiteCatchesBugs")
	}
	h := fakeHarness(m)
	// In memory, what should happen does at once: fail broken variants
	// sooner than the default bound.
	h.Wait = 3 * time.Second
	t.Run("Transactor", func(t *testing.T) { mbstoretest.RunTransactor(t, h) })
	t.Run("Inbox", func(t *testing.T) { mbstoretest.RunInbox(t, h) })
}
