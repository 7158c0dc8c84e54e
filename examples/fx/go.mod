module github.com/mb-go/mb/examples/fx

go 1.26.0

replace (
	github.com/mb-go/mb => ../..
	github.com/mb-go/mb/internal/testenv/redistest => ../../internal/testenv/redistest
	github.com/mb-go/mb/mbfx => ../../mbfx
	github.com/mb-go/mb/mbredis => ../../mbredis
)

require (
	github.com/mb-go/mb v0.0.0-00010101000000-000000000000
	github.com/mb-go/mb/mbfx v0.0.0-00010101000000-000000000000
	go.uber.org/fx v1.24.0
	go.uber.org/goleak v1.3.0
)

require (
	go.uber.org/dig v1.19.0 // indirect
	go.uber.org/multierr v1.10.0 // indirect
	go.uber.org/zap v1.26.0 // indirect
	golang.org/x/sys v0.48.0 // indirect
)
