module github.com/mb-go/mb/mbfx

go 1.26.0

replace (
	github.com/mb-go/mb => ../
	github.com/mb-go/mb/internal/testenv/redistest => ../internal/testenv/redistest
	github.com/mb-go/mb/mbredis => ../mbredis
)

require (
	github.com/mb-go/mb v0.0.0-00010101000000-000000000000
	github.com/mb-go/mb/internal/testenv/redistest v0.0.0-00010101000000-000000000000
	github.com/mb-go/mb/mbredis v0.0.0-00010101000000-000000000000
	go.uber.org/fx v1.24.0
	go.uber.org/goleak v1.3.0
)

require (
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/redis/go-redis/v9 v9.23.0 // indirect
	go.uber.org/atomic v1.12.0 // indirect
	go.uber.org/dig v1.19.0 // indirect
	go.uber.org/multierr v1.10.0 // indirect
	go.uber.org/zap v1.26.0 // indirect
	golang.org/x/sys v0.48.0 // indirect
)
