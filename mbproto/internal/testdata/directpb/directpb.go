// Package directpb holds a protoc-generated message that the mbproto tests
// register with mb directly, as a value type, to show that the codec
// supports this pattern.
//
// It is the pattern the wrapper exists to avoid: a generated message holds a
// no-copy marker, so the value-receiver MessageName below, and every handler
// that takes an OrderShipped by value, copy a lock, and go vet (copylocks)
// reports them. The package lives under testdata so that `go vet ./...`
// leaves it out; the tests that use it reach decoded values through
// reflection, so that vet has nothing to report in them either.
//
// Do not vet this package by name: go vet caches the report and, as of Go
// 1.26, then replays it for every later `go vet ./...` of the module, which
// fails until the cache entry is invalidated (a change here, or go clean
// -cache).
//
// Regenerate with go generate (needs protoc and protoc-gen-go v1.36.12 on
// PATH); CI does not run protoc, so the generated file is committed.
package directpb

//go:generate protoc --go_out=. --go_opt=paths=source_relative direct.proto

// MessageName returns the wire name of OrderShipped. It has a value
// receiver because mb requires one; this is what go vet reports.
func (OrderShipped) MessageName() string { return "test.order.shipped" }
