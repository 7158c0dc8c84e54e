package main

import (
	"os"
	"os/exec"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// Example_main runs the seed use case in-process and checks its output.
func Example_main() {
	main()
	// Output:
	// Sending welcome email: 'Welcome me!'
	// Synchronizing user: 'me'
	// User is {me me@message.bus}
}

// TestGoRun checks the README's main command, `go run ./examples/quickstart`,
// prints exactly the three lines of the seed.
func TestGoRun(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the example with the go command")
	}
	cmd := exec.Command("go", "run", ".")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go run: %v", err)
	}
	want := "Sending welcome email: 'Welcome me!'\nSynchronizing user: 'me'\nUser is {me me@message.bus}\n"
	if string(out) != want {
		t.Fatalf("go run printed\n%q\nwant\n%q", out, want)
	}
}
