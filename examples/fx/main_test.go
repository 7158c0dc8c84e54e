package main

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// Example_main runs both services and checks what they print.
func Example_main() {
	main()
	// Output:
	// Synchronizing user: 'me'
	// User is {me me@message.bus}
	// Welcome email to me@message.bus: 'Welcome me!'
}
