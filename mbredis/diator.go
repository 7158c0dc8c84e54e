package mbredis

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/mb-go/mb/mbdriver"
)

// The wire format of Diator (the Python library), version 0.1.2: its
// RedisMessageBroker publishes, with orjson, the dataclass
//
//	@dataclass(frozen=True, kw_only=True)
//	class Message:
//	    message_type: str
//	    message_name: str
//	    message_id: UUID = field(default_factory=uuid4)
//	    payload: dict
//
// which its EventEmitter builds from a NotificationEvent or an ECSTEvent:
// message_type is the event's kind ("notification_event", "ecst_event"),
// message_name the name of its class, message_id its event_id and payload
// the event's fields (event_id, event_timestamp and the subclass's own) as
// dataclass_factory dumps them. The four fields are always there; orjson
// writes a UUID in its canonical form and no invalid UTF-8.

const (
	// DiatorChannelPrefix is the default channel prefix of Diator's
	// RedisMessageBroker: the topic to publish to for a Diator consumer
	// with default settings.
	DiatorChannelPrefix = "python_diator_channel"

	// DiatorNotificationEvent and DiatorECSTEvent are the message types of
	// Diator's NotificationEvent and ECSTEvent.
	DiatorNotificationEvent = "notification_event"
	DiatorECSTEvent         = "ecst_event"

	// DiatorMessageTypeExtension is the CloudEvents extension attribute
	// that holds a message's Diator message_type, in both directions, with
	// [FormatDiator]: a consumer finds it among the extensions of the
	// message's metadata, and a message sets it with an Extensions method
	// (see Diator in the package documentation).
	DiatorMessageTypeExtension = "diatormessagetype"

	// HeaderDiatorMessageType is the binary-mode header of
	// [DiatorMessageTypeExtension], "ce-diatormessagetype": what the
	// driver reads from a published message and writes on a received one.
	HeaderDiatorMessageType = "ce-" + DiatorMessageTypeExtension

	// DefaultDiatorSource is the default of PubSubOptions.DiatorSource.
	DefaultDiatorSource = "/diator"
)

// diatorMessage is the JSON object of Diator's Message dataclass, fields in
// its order.
type diatorMessage struct {
	MessageType string          `json:"message_type"`
	MessageName string          `json:"message_name"`
	MessageID   string          `json:"message_id"`
	Payload     json.RawMessage `json:"payload"`
}

// EncodeDiator returns the JSON that Diator's RedisMessageBroker publishes
// for a message of messageType (such as [DiatorNotificationEvent]) named
// messageName, with id messageID and payload, compact and with the fields
// in the order orjson writes them. It accepts exactly what [DecodeDiator]
// accepts, which is what Diator's Message holds: any strings as type and
// name (Diator sends empty ones too), a UUID in its canonical form
// (8-4-4-4-12 hexadecimal digits, either case) as id, and a JSON object as
// payload, all in valid UTF-8. It returns an error naming every field that
// is not.
func EncodeDiator(messageType, messageName, messageID string, payload []byte) ([]byte, error) {
	var errs []error
	if !utf8.ValidString(messageType) {
		errs = append(errs, errors.New("mbredis: Diator message_type is not valid UTF-8"))
	}
	if !utf8.ValidString(messageName) {
		errs = append(errs, errors.New("mbredis: Diator message_name is not valid UTF-8"))
	}
	if err := checkDiatorID(messageID); err != nil {
		errs = append(errs, err)
	}
	if err := checkDiatorPayload(payload); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // orjson does not escape <, > and &
	if err := enc.Encode(diatorMessage{messageType, messageName, messageID, payload}); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// DecodeDiator parses the JSON that Diator publishes (see [FormatDiator])
// into a Message with ID message_id, Body payload (as it is in b) and the
// headers "ce-id" (message_id), "ce-type" (message_name), "ce-specversion"
// ("1.0"), "ce-source" (source), "content-type" ("application/json") and
// [HeaderDiatorMessageType] (message_type). It accepts exactly what
// [EncodeDiator] accepts: a JSON object in valid UTF-8 with the four
// fields, message_type and message_name strings, message_id a UUID in its
// canonical form and payload an object; other fields are ignored. It
// returns an error for anything else and never panics.
func DecodeDiator(b []byte, source string) (*mbdriver.Message, error) {
	if !utf8.Valid(b) {
		return nil, errors.New("mbredis: not a Diator message: not valid UTF-8")
	}
	var dm struct {
		MessageType *string         `json:"message_type"`
		MessageName *string         `json:"message_name"`
		MessageID   *string         `json:"message_id"`
		Payload     json.RawMessage `json:"payload"`
	}
	if err := json.Unmarshal(b, &dm); err != nil {
		return nil, fmt.Errorf("mbredis: not a Diator message: %w", err)
	}
	var errs []error
	for _, f := range []struct {
		name string
		v    *string
	}{{"message_type", dm.MessageType}, {"message_name", dm.MessageName}, {"message_id", dm.MessageID}} {
		if f.v == nil {
			errs = append(errs, fmt.Errorf("mbredis: not a Diator message: %s is missing or null", f.name))
		}
	}
	if dm.MessageID != nil {
		if err := checkDiatorID(*dm.MessageID); err != nil {
			errs = append(errs, err)
		}
	}
	if err := checkDiatorPayload(dm.Payload); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	h := map[string]string{
		"ce-id":                 *dm.MessageID,
		"ce-type":               *dm.MessageName,
		"ce-specversion":        "1.0",
		"ce-source":             source,
		"content-type":          "application/json",
		HeaderDiatorMessageType: *dm.MessageType,
	}
	return &mbdriver.Message{ID: *dm.MessageID, Headers: h, Body: dm.Payload}, nil
}

// checkDiatorID reports whether id can be the message_id of Diator's
// Message, a UUID.
func checkDiatorID(id string) error {
	if !isUUID(id) {
		return fmt.Errorf("mbredis: Diator message_id %q is not a UUID (8-4-4-4-12 hexadecimal digits), which Diator's Message holds", id)
	}
	return nil
}

// checkDiatorPayload reports whether p can be the payload of Diator's
// Message: a JSON object (a Python dict), in valid UTF-8.
func checkDiatorPayload(p []byte) error {
	if t := bytes.TrimLeft(p, " \t\r\n"); len(t) == 0 || t[0] != '{' || !json.Valid(p) || !utf8.Valid(p) {
		return errors.New("mbredis: Diator payload is not a JSON object in UTF-8, which Diator's Message holds (a dict)")
	}
	return nil
}

// isUUID reports whether s is a UUID in its canonical text form:
// 8-4-4-4-12 hexadecimal digits, in either case, as Python's str(UUID)
// and orjson write it (in lower case) and UUID() reads it.
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := range len(s) {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
	}
	return true
}

// diatorEvent returns the message_id and the payload of a Diator message
// with id whose payload is body, such that the message_id is the
// payload's event_id, as with the events Diator publishes: the payload's
// event_id when it has one (which must then be a UUID), or id, which the
// payload then gets as its first field "event_id". A body that is not a
// JSON object is returned as it is, for EncodeDiator to refuse.
func diatorEvent(id string, body []byte) (string, []byte, error) {
	var fields map[string]json.RawMessage
	if json.Unmarshal(body, &fields) != nil || fields == nil {
		return id, body, nil
	}
	if raw, ok := fields["event_id"]; ok {
		var eventID string
		if json.Unmarshal(raw, &eventID) != nil || !isUUID(eventID) {
			return "", nil, fmt.Errorf("mbredis: the payload's event_id %s is not a UUID, which the event_id of Diator's events is (and Diator's message_id with it)", raw)
		}
		return eventID, body, nil
	}
	if err := checkDiatorID(id); err != nil {
		return "", nil, err
	}
	// id is made of hexadecimal digits and hyphens: no escaping.
	open := bytes.IndexByte(body, '{') + 1
	out := make([]byte, 0, len(body)+len(id)+14)
	out = append(out, body[:open]...)
	out = append(out, `"event_id":"`...)
	out = append(out, id...)
	out = append(out, '"')
	if len(fields) > 0 {
		out = append(out, ',')
	}
	return id, append(out, body[open:]...), nil
}
