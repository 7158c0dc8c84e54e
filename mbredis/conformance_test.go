package mbredis_test

import (
	"testing"
	"time"

	"github.com/mb-go/mb/mbdriver"
	"github.com/mb-go/mb/mbdrivertest"
	"github.com/mb-go/mb/mbredis"
)

const (
	testBlock        = 100 * time.Millisecond
	testClaimMinIdle = 200 * time.Millisecond
)

func TestStreamsConformance(t *testing.T) {
	c := newClient(t)
	p := prefix(t, c)
	mbdrivertest.Run(t, mbdrivertest.Harness{
		Open: func(t *testing.T) mbdriver.Driver {
			// Each driver has a client of its own, as a process would.
			d, err := mbredis.NewStreams(newClient(t), &mbredis.StreamsOptions{
				KeyPrefix:    p,
				Block:        testBlock,
				ClaimMinIdle: testClaimMinIdle,
			})
			if err != nil {
				t.Fatal(err)
			}
			return d
		},
		Prefix:         "mbtest-",
		RedeliveryWait: 5 * time.Second,
	})
}

func TestPubSubConformance(t *testing.T) {
	c := newClient(t)
	p := prefix(t, c)
	mbdrivertest.Run(t, mbdrivertest.Harness{
		Open: func(t *testing.T) mbdriver.Driver {
			d, err := mbredis.NewPubSub(newClient(t), &mbredis.PubSubOptions{KeyPrefix: p})
			if err != nil {
				t.Fatal(err)
			}
			return d
		},
		Prefix: "mbtest-",
	})
}
