package idsync

import (
	"errors"
	"testing"
	"time"
)

var t0 = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

func cfgNamed(ext string) *Config {
	return &Config{DestinationType: Iterable, ExternalAudienceID: ext, Setup: SetupDefault, Settings: DefaultSettings()}
}

// summary is a compact view of versions for comparisons: number,
// effective_at offset from t0, and the config's external audience id or
// "deleted".
type summary struct {
	n    int64
	eff  time.Duration
	what string
}

func summarize(vs []Version) []summary {
	out := make([]summary, len(vs))
	for i, v := range vs {
		what := "deleted"
		if !v.Deleted {
			what = v.Config.ExternalAudienceID
		}
		out[i] = summary{v.Version, v.EffectiveAt.Sub(t0), what}
	}
	return out
}

func TestEdit(t *testing.T) {
	a := Activation{Delay: 5 * time.Minute, RetainSuperseded: time.Hour}
	type edit struct {
		at  time.Duration // offset from t0
		cfg string        // "" deletes
	}
	tests := []struct {
		name    string
		edits   []edit
		want    []summary
		wantErr error
	}{
		{"first version effective at once", []edit{{0, "a"}}, []summary{{1, 0, "a"}}, nil},
		{"later edit waits the delay", []edit{{0, "a"}, {time.Minute, "b"}},
			[]summary{{1, 0, "a"}, {2, 6 * time.Minute, "b"}}, nil},
		{"edit while pending replaces it and restarts the delay", []edit{{0, "a"}, {time.Minute, "b"}, {3 * time.Minute, "c"}},
			[]summary{{1, 0, "a"}, {3, 8 * time.Minute, "c"}}, nil},
		{"edit after activation keeps the superseded version", []edit{{0, "a"}, {time.Minute, "b"}, {10 * time.Minute, "c"}},
			[]summary{{1, 0, "a"}, {2, 6 * time.Minute, "b"}, {3, 15 * time.Minute, "c"}}, nil},
		{"superseded versions are pruned past retention", []edit{{0, "a"}, {time.Minute, "b"}, {2 * time.Hour, "c"}},
			[]summary{{2, 6 * time.Minute, "b"}, {3, 2*time.Hour + 5*time.Minute, "c"}}, nil},
		{"delete is a tombstone after the delay", []edit{{0, "a"}, {time.Minute, ""}},
			[]summary{{1, 0, "a"}, {2, 6 * time.Minute, "deleted"}}, nil},
		{"delete replaces a pending edit", []edit{{0, "a"}, {time.Minute, "b"}, {2 * time.Minute, ""}},
			[]summary{{1, 0, "a"}, {3, 7 * time.Minute, "deleted"}}, nil},
		{"edit replaces a pending delete", []edit{{0, "a"}, {time.Minute, ""}, {2 * time.Minute, "b"}},
			[]summary{{1, 0, "a"}, {3, 7 * time.Minute, "b"}}, nil},
		{"re-creating after an effective delete is effective at once", []edit{{0, "a"}, {time.Minute, ""}, {10 * time.Minute, "b"}},
			[]summary{{1, 0, "a"}, {2, 6 * time.Minute, "deleted"}, {3, 10 * time.Minute, "b"}}, nil},
		{"deleting a missing connection", []edit{{0, ""}}, nil, ErrNotFound},
		{"deleting twice", []edit{{0, "a"}, {time.Minute, ""}, {10 * time.Minute, ""}}, nil, ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var vs []Version
			var err error
			for i, e := range tt.edits {
				var cfg *Config
				if e.cfg != "" {
					cfg = cfgNamed(e.cfg)
				}
				var created Version
				vs, created, err = a.Edit(vs, cfg, t0.Add(e.at))
				if err != nil {
					if i != len(tt.edits)-1 {
						t.Fatalf("edit %d: %v", i, err)
					}
					break
				}
				if got := vs[len(vs)-1]; got.Version != created.Version || !got.UpdatedAt.Equal(t0.Add(e.at)) {
					t.Fatalf("edit %d: returned version %+v is not the newest %+v", i, created, got)
				}
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr != nil {
				return
			}
			got := summarize(vs)
			if len(got) != len(tt.want) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("version %d: got %+v, want %+v", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestEditDoesNotModifyInput(t *testing.T) {
	a := DefaultActivation()
	vs, _, _ := a.Edit(nil, cfgNamed("a"), t0)
	vs, _, _ = a.Edit(vs, cfgNamed("b"), t0.Add(time.Minute))
	before := summarize(vs)
	_, _, _ = a.Edit(vs, cfgNamed("c"), t0.Add(2*time.Minute))
	after := summarize(vs)
	for i := range before {
		if before[i] != after[i] {
			t.Fatalf("Edit modified its input: %+v -> %+v", before, after)
		}
	}
}

func TestVersionAt(t *testing.T) {
	vs := []Version{
		{Version: 3, EffectiveAt: t0, Config: cfgNamed("v3")},
		{Version: 4, EffectiveAt: t0.Add(10 * time.Minute), Config: cfgNamed("v4")},
		{Version: 5, EffectiveAt: t0.Add(20 * time.Minute), Deleted: true},
	}
	tests := []struct {
		name string
		ref  time.Duration
		want int64
	}{
		{"before every retained version: the oldest", -time.Hour, 3},
		{"exactly at effective_at", 0, 3},
		{"between", 5 * time.Minute, 3},
		{"one nanosecond before the next", 10*time.Minute - 1, 3},
		{"at the next", 10 * time.Minute, 4},
		{"the tombstone", 30 * time.Minute, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := VersionAt(vs, t0.Add(tt.ref)); got == nil || got.Version != tt.want {
				t.Fatalf("got %+v, want version %d", got, tt.want)
			}
		})
	}
	if VersionAt(nil, t0) != nil {
		t.Error("VersionAt(nil) is not nil")
	}
}

func TestReferenceTime(t *testing.T) {
	now := t0
	tests := []struct {
		name string
		ev   Event
		want time.Time
	}{
		{"timestamp", Event{Timestamp: t0.Add(-time.Minute)}, t0.Add(-time.Minute)},
		{"sync.started_at wins", Event{Timestamp: t0.Add(-time.Minute), Sync: &Sync{StartedAt: t0.Add(-time.Hour)}}, t0.Add(-time.Hour)},
		{"sync without started_at", Event{Timestamp: t0.Add(-time.Minute), Sync: &Sync{ID: "r"}}, t0.Add(-time.Minute)},
		{"future clamped to now", Event{Timestamp: t0.Add(time.Hour)}, now},
		{"future sync clamped to now", Event{Timestamp: t0, Sync: &Sync{StartedAt: t0.Add(time.Hour)}}, now},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.ev.ReferenceTime(now); !got.Equal(tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestStates(t *testing.T) {
	a := Activation{Delay: 5 * time.Minute, RetainSuperseded: time.Hour}
	vs, _, _ := a.Edit(nil, cfgNamed("a"), t0)
	vs, _, _ = a.Edit(vs, cfgNamed("b"), t0.Add(time.Minute))
	now := t0.Add(2 * time.Minute)
	if s := StateOf(vs, 0, now); s != StateActive {
		t.Errorf("v1 %s, want active", s)
	}
	if s := StateOf(vs, 1, now); s != StatePending {
		t.Errorf("v2 %s, want pending", s)
	}
	act, pend := ActiveAndPending(vs, now)
	if act == nil || act.Version != 1 || pend == nil || pend.Version != 2 {
		t.Errorf("ActiveAndPending = %+v, %+v", act, pend)
	}
	later := t0.Add(7 * time.Minute)
	if s := StateOf(vs, 0, later); s != StateSuperseded {
		t.Errorf("v1 later %s, want superseded", s)
	}
	if act, pend := ActiveAndPending(vs, later); act.Version != 2 || pend != nil {
		t.Errorf("later ActiveAndPending = %+v, %+v", act, pend)
	}
	// A tombstone alone past retention may be forgotten.
	vs, _, _ = a.Edit(vs, nil, later)
	end := later.Add(5*time.Minute + 2*time.Hour)
	vs = a.Prune(vs, end)
	if len(vs) != 1 || !vs[0].Deleted || !a.Expired(vs, end) {
		t.Errorf("after retention: %+v expired=%v", summarize(vs), a.Expired(vs, end))
	}
	if a.Expired(vs, later.Add(10*time.Minute)) {
		t.Error("tombstone expired before retention")
	}
}

func TestActivationCheck(t *testing.T) {
	if err := DefaultActivation().Check(); err != nil {
		t.Fatal(err)
	}
	if err := (Activation{Delay: -1}).Check(); err == nil {
		t.Error("negative delay accepted")
	}
	if err := (Activation{RetainSuperseded: -1}).Check(); err == nil {
		t.Error("negative retention accepted")
	}
}
