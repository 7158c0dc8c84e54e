package mb_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/mb-go/mb"
)

// A failure is one structured log record, with the attribute names the
// Logging middleware uses, and no payload.
func TestFailuresLogStructured(t *testing.T) {
	var buf syncBuffer
	logger := slog.New(slog.NewJSONHandler(&buf, nil))
	bus := mb.New(&mb.Options{Logger: logger})
	mb.Subscribe(bus, func(ctx context.Context, e Note) error { return errors.New("smtp down") }, mb.WithName("mailer"))
	ctx := mb.WithCorrelationID(context.Background(), "req-7")
	noErr(t, mb.Publish(ctx, bus, Note{"secret payload"}))
	recs := buf.records(t)
	if len(recs) != 1 {
		t.Fatalf("%d records: %v", len(recs), recs)
	}
	e, _ := recs[0]["error"].(map[string]any)
	if e["kind"] != "event" || e["name"] != "mb_test.Note" || e["handler"] != "mailer" || e["correlation_id"] != "req-7" || e["id"] == "" {
		t.Fatalf("record %v", recs[0])
	}
	if strings.Contains(buf.String(), "secret payload") {
		t.Fatalf("a payload was logged: %s", buf.String())
	}

	// A consumer's failed handling: the same names, and where the message
	// came from and which attempt it was.
	b := setupCx(t, "cx.order.placed")
	mb.Subscribe(b.bus, func(ctx context.Context, e CxOrderPlaced) error { return errors.New("db down") }, mb.WithName("bill"))
	stop := b.run(t, mb.ConsumerOptions{MaxAttempts: 2, Backoff: mb.Backoff{Min: time.Millisecond, Max: time.Millisecond}})
	b.publish(t, CxOrderPlaced{Order: "o"})
	eventually(t, "a failure reported", func() bool { return len(b.errs.get()) >= 1 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	var ce *mb.ConsumerError
	if !errors.As(b.errs.get()[0], &ce) || ce.Attempt != 1 || ce.MaxAttempts != 2 || ce.Group != cxGroup || ce.Source != "/test" {
		t.Fatalf("reported %v", b.errs.get())
	}
	var cbuf syncBuffer
	slog.New(slog.NewJSONHandler(&cbuf, nil)).Error("failed", "error", ce)
	first, _ := cbuf.records(t)[0]["error"].(map[string]any)
	if first["name"] != "cx.order.placed" || first["attempt"] != 1.0 || first["max_attempts"] != 2.0 || first["group"] != cxGroup || first["correlation_id"] == "" {
		t.Fatalf("record %v", cbuf.records(t)[0])
	}
}
