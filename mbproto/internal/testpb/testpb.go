// Package testpb holds the protoc-generated messages of the mbproto tests.
// The tests use them through the wrapper pattern (a struct embedding the
// generated pointer), which go vet accepts.
//
// Regenerate with go generate (needs protoc and protoc-gen-go v1.36.12 on
// PATH); CI does not run protoc, so the generated file is committed.
package testpb

//go:generate protoc --go_out=. --go_opt=paths=source_relative orders.proto
