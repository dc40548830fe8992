package store

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/idsync/idsync/idsync"
)

func TestStoreResyncs(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		s := e.store(t, nil, Options{ResyncRetention: time.Hour})
		at := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
		r := idsync.Resync{ID: fmt.Sprintf("rs_%s", e.space[4:]), SpaceID: e.space, AudienceID: "aud_1", DestinationID: "wh_1",
			Version: 2, StartAt: at, CreatedAt: at, CreatedBy: "ops", Secret: "0123456789abcdef0123456789abcdef"}
		if got, err := s.Resync(ctx, r.ID); err != nil || got != nil {
			t.Fatalf("before creation: %v, %v", got, err)
		}
		if err := s.CreateResync(ctx, r); err != nil {
			t.Fatal(err)
		}
		if err := s.CreateResync(ctx, r); !errors.Is(err, ErrResyncExists) {
			t.Fatalf("second create: %v, want ErrResyncExists", err)
		}
		got, err := s.Resync(ctx, r.ID)
		if err != nil || got == nil || got.ID != r.ID || !got.StartAt.Equal(at) || got.Cancelled() {
			t.Fatalf("Resync: %+v, %v", got, err)
		}
		if ttl := e.rdb.TTL(ctx, s.resyncKey(r.ID)).Val(); ttl <= 0 || ttl > time.Hour {
			t.Errorf("resync key TTL %s, want at most the retention (1h)", ttl)
		}
		list, err := s.ListResyncs(ctx, Key{e.space, "aud_1", "wh_1"})
		if err != nil || len(list) != 1 || list[0].ID != r.ID {
			t.Fatalf("ListResyncs: %+v, %v", list, err)
		}

		// Progress, by partition; an unreadable entry is left out.
		ps := []idsync.ResyncProgress{{Partition: 0, Done: 5, Total: 10, Instance: "a"}, {Partition: 3, Done: 7, Total: 7, Finished: true, Instance: "b"}}
		if err := s.SaveResyncProgress(ctx, r.ID, ps); err != nil {
			t.Fatal(err)
		}
		// A late report older than what is stored does not replace it.
		stale := []idsync.ResyncProgress{{Partition: 3, Done: 1, Total: 7, Instance: "old", Updated: time.Unix(1, 0)}}
		fresh := []idsync.ResyncProgress{{Partition: 3, Done: 7, Total: 7, Finished: true, Instance: "b", Updated: time.Unix(100, 0)}}
		if err := s.SaveResyncProgress(ctx, r.ID, fresh); err != nil {
			t.Fatal(err)
		}
		if err := s.SaveResyncProgress(ctx, r.ID, stale); err != nil {
			t.Fatal(err)
		}
		e.rdb.HSet(ctx, s.resyncProgressKey(r.ID), "9", "{not json")
		back, err := s.ResyncProgress(ctx, r.ID)
		if err != nil || len(back) != 2 {
			t.Fatalf("ResyncProgress: %+v, %v", back, err)
		}
		for _, p := range back {
			if p.Partition == 3 && (p.Instance != "b" || !p.Finished) {
				t.Errorf("partition 3: %+v, want the newer report (instance b, finished)", p)
			}
		}

		// Cancel, twice: the first time stays.
		c1, err := s.CancelResync(ctx, r.ID, at.Add(time.Minute))
		if err != nil || c1 == nil || !c1.Cancelled() {
			t.Fatalf("cancel: %+v, %v", c1, err)
		}
		c2, err := s.CancelResync(ctx, r.ID, at.Add(time.Hour))
		if err != nil || !c2.CancelledAt.Equal(at.Add(time.Minute)) {
			t.Fatalf("second cancel: %+v, %v", c2, err)
		}
		if _, err := s.CancelResync(ctx, "rs_nope", at); !errors.Is(err, idsync.ErrNotFound) {
			t.Fatalf("cancel of an unknown resync: %v, want ErrNotFound", err)
		}

		// A hostile stored value is unusable, never a crash or a wait.
		for name, raw := range map[string]string{
			"not json":   "{",
			"other id":   `{"id":"rs_other","space_id":"s","audience_id":"a","destination_id":"d","start_at":"2026-06-01T00:00:00Z","secret":"0123456789abcdef0123"}`,
			"no start":   `{"id":"rs_bad","space_id":"s","audience_id":"a","destination_id":"d"}`,
			"wrong type": "",
		} {
			key := s.resyncKey("rs_bad")
			e.rdb.Del(ctx, key)
			if name == "wrong type" {
				e.rdb.HSet(ctx, key, "f", "v")
			} else {
				e.rdb.Set(ctx, key, raw, time.Minute)
			}
			if got, err := s.Resync(ctx, "rs_bad"); !errors.Is(err, idsync.ErrUnusableConfig) {
				t.Errorf("%s: Resync = %+v, %v; want ErrUnusableConfig", name, got, err)
			}
			e.rdb.Del(ctx, key)
		}
	})
}
