package bench

import (
	"context"
	"fmt"
	"runtime"
	"testing"
)

// The variant tables: benchmarks and tests both range over them.

var sendVariants = []sendVariant{
	{"mb", newSendMB},
	{"mb-pooled", newSendMBPooled},
	{"direct", newSendDirect},
	{"floor", newSendFloor},
	{"floor-typeptr", newSendFloorPtr},
	{"watermill", newSendWatermill},
}

var sendMiddlewareGroups = []struct {
	name     string
	variants []sendVariant
}{
	{"passthrough", []sendVariant{
		{"mb", newSendMBPassthrough},
		{"direct", newSendDirectPassthrough},
	}},
	{"recover-validate-timeout", []sendVariant{
		{"mb", newSendMBRecoverValidateTimeout},
		{"direct", newSendDirectRecoverValidateTimeout},
	}},
}

var sendEmitVariants = []sendVariant{
	{"mb", newSendEmitMB},
	{"direct", newSendEmitDirect},
	{"watermill", newSendEmitWatermill},
	{"watermill-group", newSendEmitWatermillGroup},
}

var publishSubscribers = []int{1, 3}

func publishVariants(subs int) []publishVariant {
	return []publishVariant{
		{"mb", newPublishMB(subs)},
		{"direct", newPublishDirect(subs)},
		{"eventbus", newPublishEventBus(subs)},
		{"eventbus-closure", newPublishEventBusClosure(subs)},
	}
}

var sendParallelVariants = []sendVariant{
	{"mb", newSendMB},
	{"mb-pooled", newSendMBPooled},
	{"direct", newSendDirect},
	{"floor", newSendFloor},
}

// parallelProcs are the GOMAXPROCS values BenchmarkSendParallel runs with,
// so that one plain run shows the scaling without -cpu.
func parallelProcs() []int {
	procs := []int{1, 2}
	if n := runtime.NumCPU(); n > 2 {
		procs = append(procs, n)
	}
	return procs
}

func testCommand(shard int) CreateUser {
	return CreateUser{Username: "me", Email: "me@message.bus", Shard: shard}
}

func testEvent() UserCreated {
	return UserCreated{Username: "me", Email: "me@message.bus"}
}

func benchSend(b *testing.B, v sendVariant) {
	send := v.new(b)
	ctx := context.Background()
	cmd := testCommand(0)
	b.ReportAllocs()
	for b.Loop() {
		u, err := send(ctx, cmd)
		if err != nil {
			b.Fatal(err)
		}
		sinkUser = u
	}
}

func benchPublish(b *testing.B, v publishVariant) {
	publish := v.new(b)
	ctx := context.Background()
	e := testEvent()
	b.ReportAllocs()
	for b.Loop() {
		if err := publish(ctx, e); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSend: a command with a result, no middleware, no events.
func BenchmarkSend(b *testing.B) {
	for _, v := range sendVariants {
		b.Run(v.name, func(b *testing.B) { benchSend(b, v) })
	}
}

// BenchmarkSendMiddleware: the command of BenchmarkSend through three
// middlewares (mb) or three wrapping funcs (direct).
func BenchmarkSendMiddleware(b *testing.B) {
	for _, g := range sendMiddlewareGroups {
		b.Run(g.name, func(b *testing.B) {
			for _, v := range g.variants {
				b.Run(v.name, func(b *testing.B) { benchSend(b, v) })
			}
		})
	}
}

// BenchmarkSendEmit: a command whose handler emits one event that three
// subscribers handle.
func BenchmarkSendEmit(b *testing.B) {
	for _, v := range sendEmitVariants {
		b.Run(v.name, func(b *testing.B) { benchSend(b, v) })
	}
}

// BenchmarkPublish: one event published from outside any handler to one and
// to three subscribers.
func BenchmarkPublish(b *testing.B) {
	for _, subs := range publishSubscribers {
		b.Run(fmt.Sprintf("subs=%d", subs), func(b *testing.B) {
			for _, v := range publishVariants(subs) {
				b.Run(v.name, func(b *testing.B) { benchPublish(b, v) })
			}
		})
	}
}

// BenchmarkSendParallel: BenchmarkSend from GOMAXPROCS goroutines at once,
// each storing into its own shard, with GOMAXPROCS 1 and 2 (and NumCPU when
// larger), so that one plain run shows the scaling (the -N suffix of the
// names is the GOMAXPROCS go test started with, not the one measured).
// ns/op is wall time per op: perfect scaling halves it from gomaxprocs=1 to
// gomaxprocs=2.
func BenchmarkSendParallel(b *testing.B) {
	for _, procs := range parallelProcs() {
		b.Run(fmt.Sprintf("gomaxprocs=%d", procs), func(b *testing.B) {
			for _, v := range sendParallelVariants {
				b.Run(v.name, func(b *testing.B) {
					// testing sets GOMAXPROCS (to the -cpu value) before
					// each run of a leaf benchmark, so set it here.
					old := runtime.GOMAXPROCS(procs)
					defer func() {
						b.StopTimer()
						runtime.GOMAXPROCS(old)
					}()
					send := v.new(b)
					ctx := context.Background()
					b.ReportAllocs()
					b.ResetTimer()
					b.RunParallel(func(pb *testing.PB) {
						cmd := testCommand(int(nextShard.Add(1)))
						n := 0
						for pb.Next() {
							u, err := send(ctx, cmd)
							if err != nil {
								b.Error(err)
								return
							}
							n += len(u.Username)
						}
						sinkN.Add(int64(n))
					})
				})
			}
		})
	}
}
