package mbfx_test

import (
	"testing"

	"github.com/mb-go/mb/internal/testenv/redistest"
	"github.com/mb-go/mb/mbredis"
)

// Over Redis Streams too, the app's stop drains its consumer: the entry
// being handled finishes and is acknowledged (XACK) before Stop returns.
func TestConsumerDrainsOnStopRedis(t *testing.T) {
	client := redistest.Client(t)
	prefix := redistest.Prefix(t, client, "mbtest:mbfx:")
	streams, err := mbredis.NewStreams(client, &mbredis.StreamsOptions{KeyPrefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	defer streams.Close()
	testDrain(t, streams, func() int {
		pending, err := client.XPending(ctx(t), prefix+topic, group).Result()
		if err != nil {
			t.Fatal(err)
		}
		return int(pending.Count)
	})
}
