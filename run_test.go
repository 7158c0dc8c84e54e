package mb_test

import (
	"context"
	"errors"
	"testing"

	"github.com/mb-go/mb"
	"github.com/mb-go/mb/mbtest"
)

// Run gives a function a unit of work, as Send gives a command's handler.
func TestRun(t *testing.T) {
	t.Parallel()
	tr := &mbtest.Transactor{}
	bus := mb.New(&mb.Options{Transactor: tr, ErrorHandler: noErrors(t)})
	var log recorder
	mb.HandleCommand(bus, createAccount)
	mb.Subscribe(bus, func(ctx context.Context, e AccountCreated) error { log.add("created " + e.Name); return nil })
	mb.Subscribe(bus, func(ctx context.Context, e Note) error { log.add("note " + e.Text); return nil })

	err := mb.Run(context.Background(), bus, "request", func(ctx context.Context) error {
		touch(t, ctx)
		md, _ := mb.MetadataFrom(ctx)
		if md.Name != "request" || md.Kind != mb.KindCommand {
			t.Errorf("metadata %+v", md)
		}
		if _, err := mb.Send[Account](ctx, bus, CreateAccount{"a"}); err != nil { // joins the unit
			return err
		}
		return mb.Emit(ctx, Note{"run"})
	})
	noErr(t, err)
	wantSeq(t, log.get(), []string{"created a", "note run"})
	wantSeq(t, tr.Calls(), []string{"tx1 begin", "tx1 savepoint mb_sp_1", "tx1 release mb_sp_1", "tx1 commit"})

	log.reset()
	tr.Reset()
	errFail := errors.New("request failed")
	err = mb.Run(context.Background(), bus, "", func(ctx context.Context) error {
		touch(t, ctx)
		noErr(t, mb.Emit(ctx, Note{"lost"}))
		return errFail
	})
	wantErr(t, err, errFail)
	err = mb.Run(context.Background(), bus, "", func(ctx context.Context) error { panic("boom") })
	wantErr(t, err, mb.ErrPanic)
	if len(log.get()) != 0 {
		t.Fatalf("events of failed units dispatched: %q", log.get())
	}
	wantSeq(t, tr.Calls(), []string{"tx1 begin", "tx1 rollback"})

	wantErr(t, mb.Run(context.Background(), nil, "", func(context.Context) error { return nil }), mb.ErrInvalidArgument)
	wantErr(t, mb.Run(context.Background(), bus, "", nil), mb.ErrInvalidArgument)
}
