module github.com/mb-go/mb/mbproto

go 1.26.0

replace github.com/mb-go/mb => ../

require (
	github.com/mb-go/mb v0.0.0-00010101000000-000000000000
	go.uber.org/goleak v1.3.0
	google.golang.org/protobuf v1.36.12
)
