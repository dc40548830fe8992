package demo

import (
	"testing"
	"time"

	"github.com/idsync/idsync/idsync"
)

func TestConnectionsAreValidAndCoverEveryType(t *testing.T) {
	seen := map[idsync.DestinationType]bool{}
	for _, c := range Connections() {
		cfg, err := idsync.ParseConfig(c.Config)
		if err != nil {
			t.Fatalf("%s: %v", c.Destination, err)
		}
		if !idsync.ValidDestinationID(c.Destination) || !idsync.ValidEntityID(c.Audience) {
			t.Errorf("bad ids %s/%s", c.Audience, c.Destination)
		}
		seen[cfg.DestinationType] = true
	}
	for _, dt := range idsync.DestinationTypes {
		if !seen[dt] {
			t.Errorf("no demo connection of type %s", dt)
		}
	}
}

func TestGenerator(t *testing.T) {
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	a, b := NewGenerator(7), NewGenerator(7)
	bad, good := 0, 0
	for range 1000 {
		ea, eb := a.Next(now), b.Next(now)
		if string(ea.Value) != string(eb.Value) || ea.Key != eb.Key {
			t.Fatal("same seed, different events")
		}
		_, err := idsync.Decode(ea.Value, now, idsync.DefaultLimits())
		if ea.Bad {
			bad++
			if err == nil {
				t.Errorf("bad event decoded: %s", ea.Value)
			}
			continue
		}
		good++
		if err != nil {
			t.Fatalf("good event refused: %v\n%s", err, ea.Value)
		}
		if n := len(ea.Value); n < 400 || n > 2000 {
			t.Errorf("event of %d bytes", n)
		}
	}
	if bad != 20 || good != 980 {
		t.Errorf("bad %d good %d", bad, good)
	}
}
