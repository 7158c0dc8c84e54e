package mbredis_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mb-go/mb"
	"github.com/mb-go/mb/internal/testenv/redistest"
	"github.com/mb-go/mb/mbdriver"
	"github.com/mb-go/mb/mbredis"
)

// TestDiatorPublish publishes in FormatDiator and checks, with a plain
// go-redis subscriber doing what a Diator consumer does (PSUBSCRIBE
// "<prefix>:*"), the channel name and the exact JSON: Diator's message_id
// is the payload's event_id, which the payload gets when it has none.
func TestDiatorPublish(t *testing.T) {
	c := newClient(t)
	p := prefix(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	chanPrefix := p + mbredis.DiatorChannelPrefix
	ps := c.PSubscribe(ctx, redistest.GlobEscape(chanPrefix)+":*")
	defer ps.Close()
	if _, err := ps.Receive(ctx); err != nil {
		t.Fatal(err)
	}

	const id, id2 = "0190a3c4-5b6d-7e8f-9a0b-1c2d3e4f5a6b", "0190a3c4-5b6d-7e8f-9a0b-1c2d3e4f5a6c"
	msg := func(id, body string) *mbdriver.Message {
		return &mbdriver.Message{ID: id, Headers: map[string]string{"ce-type": "UserJoined", "ce-id": id, "ce-source": "/meetings"}, Body: []byte(body)}
	}
	diator := func(typ, id, payload string) string {
		return `{"message_type":"` + typ + `","message_name":"UserJoined","message_id":"` + id + `","payload":` + payload + `}`
	}
	const event = `{"event_id":"` + uuid1 + `","event_timestamp":"2024-05-01T12:34:56.123456","user_id":987}`
	for _, tc := range []struct {
		name             string
		raw              bool // PubSubOptions.DiatorRawPayload
		msg              *mbdriver.Message
		channel, payload string // "" payload: Publish must fail
	}{
		{"NoEventID", false, msg(id, `{ "user_id": 987, "room": "<a&b>" }`),
			":notification_event:" + id, diator("notification_event", id, `{"event_id":"`+id+`","user_id":987,"room":"<a&b>"}`)},
		{"EventIDIsMessageID", false, msg(id, event),
			":notification_event:" + uuid1, diator("notification_event", uuid1, event)},
		{"EmptyPayload", false, msg(id, ` { } `),
			":notification_event:" + id, diator("notification_event", id, `{"event_id":"`+id+`"}`)},
		{"RawPayload", true, msg(id, event),
			":notification_event:" + id, diator("notification_event", id, event)},
		{"RawPayloadNoEventID", true, msg(id, `{"a":1}`),
			":notification_event:" + id, diator("notification_event", id, `{"a":1}`)},
		{
			// The message type comes from the envelope's extension
			// "diatormessagetype", which an mb message sets with an
			// Extensions method.
			"TypeFromExtension", false, &mbdriver.Message{ID: id2, Body: []byte(`{}`), Headers: (&mb.Envelope{
				ID: id2, Source: "/rooms", SpecVersion: "1.0", Type: "UserJoined",
				Extensions: map[string]string{"diatormessagetype": "ecst_event"},
			}).ToHeaders()},
			":ecst_event:" + id2, diator("ecst_event", id2, `{"event_id":"`+id2+`"}`),
		},
		// What Diator's Message or events cannot hold is refused.
		{"EventIDNotUUID", false, msg(id, `{"event_id":"x"}`), "", ""},
		{"EventIDNumber", false, msg(id, `{"event_id":42}`), "", ""},
		{"EventIDNull", false, msg(id, `{"event_id":null}`), "", ""},
		{"ArrayPayload", false, msg(id, `[1]`), "", ""},
		{"EmptyID", false, msg("", `{}`), "", ""},
		{"IDNotUUID", false, msg("a:b", `{}`), "", ""},
		{"RawPayloadIDNotUUID", true, msg("a:b", event), "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := mbredis.NewPubSub(c, &mbredis.PubSubOptions{Format: mbredis.FormatDiator, DiatorRawPayload: tc.raw})
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			err = d.Publish(ctx, chanPrefix, []*mbdriver.Message{tc.msg})
			if tc.payload == "" {
				if err == nil {
					t.Fatalf("Publish(%s) = nil, want an error", tc.msg.Body)
				}
				t.Log(err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			m, err := ps.ReceiveMessage(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if m.Channel != chanPrefix+tc.channel {
				t.Errorf("channel = %q, want %q", m.Channel, chanPrefix+tc.channel)
			}
			if m.Payload != tc.payload {
				t.Errorf("payload = %s\nwant      %s", m.Payload, tc.payload)
			}
			if _, err := mbredis.DecodeDiator([]byte(m.Payload), "/src"); err != nil {
				t.Errorf("payload is not Diator's: %v", err)
			}
		})
	}
}

// TestDiatorReceive receives what a Diator producer publishes (a raw
// PUBLISH) and turns it into a valid mb envelope.
func TestDiatorReceive(t *testing.T) {
	c := newClient(t)
	p := prefix(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d, err := mbredis.NewPubSub(c, &mbredis.PubSubOptions{KeyPrefix: p, Format: mbredis.FormatDiator})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	r, err := d.Subscribe(ctx, mbdriver.Subscription{Topic: "python_diator_channel"})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	const id = "82a0b10e-1b3d-4c3c-9bdd-3934f8f824c2"
	payload := `{"message_type":"notification_event","message_name":"UserJoinedNotificationEvent","message_id":"` + id + `","payload":{"event_id":"` + id + `","user_id":987}}`
	if err := c.Publish(ctx, p+"python_diator_channel:notification_event:"+id, payload).Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.Publish(ctx, p+"python_diator_channel:notification_event:x", "not json").Err(); err != nil {
		t.Fatal(err)
	}
	// A message type with ':' (which Diator allows) is cut from the
	// channel as a whole.
	odd := `{"message_type":"a:b","message_name":"","message_id":"` + id + `","payload":{}}`
	if err := c.Publish(ctx, p+"python_diator_channel:a:b:"+id, odd).Err(); err != nil {
		t.Fatal(err)
	}
	var got []*mbdriver.Message
	for len(got) < 3 {
		msgs, err := r.Receive(ctx, 2)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, msgs...)
	}
	m := got[0]
	if m.ID != id || m.Topic != "python_diator_channel" || string(m.Body) != `{"event_id":"`+id+`","user_id":987}` ||
		m.Headers[mbredis.HeaderDiatorMessageType] != "notification_event" {
		t.Errorf("received %+v", m)
	}
	env, err := mb.EnvelopeFromHeaders(m.Headers, m.Body)
	if err != nil {
		t.Fatalf("EnvelopeFromHeaders: %v", err)
	}
	if env.Type != "UserJoinedNotificationEvent" || env.ID != id || env.Source != mbredis.DefaultDiatorSource {
		t.Errorf("envelope %+v", env)
	}
	// The message type reaches the consumer as the extension
	// "diatormessagetype" (header "ce-diatormessagetype").
	if got := env.Extensions["diatormessagetype"]; got != "notification_event" {
		t.Errorf("envelope extensions %v, want diatormessagetype=notification_event", env.Extensions)
	}
	if bad := got[1]; bad.Headers[mbredis.HeaderFrameError] == "" || string(bad.Body) != "not json" {
		t.Errorf("undecodable payload received as %+v", bad)
	}
	if m := got[2]; m.Topic != "python_diator_channel" || m.Headers[mbredis.HeaderDiatorMessageType] != "a:b" {
		t.Errorf("message of type a:b received as %+v", m)
	}
}

func TestOptionsValidation(t *testing.T) {
	c := newClientNoPing(t)
	invalid := func(what string, err error, fields ...string) {
		t.Helper()
		if !errors.Is(err, mb.ErrInvalidArgument) {
			t.Errorf("%s: %v, want an error wrapping mb.ErrInvalidArgument", what, err)
			return
		}
		for _, f := range fields {
			if !strings.Contains(err.Error(), f) {
				t.Errorf("%s: %v does not name %s", what, err, f)
			}
		}
	}
	so := &mbredis.StreamsOptions{Block: -1, ClaimMinIdle: -1, MaxLen: -1}
	_, err := mbredis.NewStreams(c, so)
	invalid("NewStreams with negative options", err, "Block", "ClaimMinIdle", "MaxLen")
	invalid("StreamsOptions.Validate", so.Validate(), "Block")
	_, err = mbredis.NewStreams(nil, nil)
	invalid("NewStreams(nil)", err, "client is nil")
	po := &mbredis.PubSubOptions{Format: 7, DiatorMessageType: "\xff", ChannelSize: -1}
	_, err = mbredis.NewPubSub(c, po)
	invalid("NewPubSub with invalid options", err, "Format", "DiatorMessageType", "ChannelSize")
	invalid("PubSubOptions.Validate", po.Validate(), "Format")
	if _, err := mbredis.NewPubSub(c, nil); err != nil {
		t.Errorf("NewPubSub(c, nil): %v", err)
	}
}
