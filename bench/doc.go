// Package bench holds the benchmarks of mb against direct calls and against
// peers (Watermill's CQRS component, github.com/asaskevich/EventBus). It has
// no API: everything lives in its _test.go files. See README.md for how to
// run it and for the latest figures.
package bench
