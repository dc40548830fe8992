package pipeline

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// refreshLag sets idsync_consumer_lag_records every LagInterval, and at
// once when partitions are assigned, until ctx ends: for each input partition assigned to this member, the end offset
// less the group's committed offset (less the start offset when nothing is
// committed). It reads committed offsets rather than what was fetched, so a
// partition that waits or is stuck shows its lag growing.
func (p *Pipeline) refreshLag(ctx context.Context) {
	t := time.NewTicker(p.cfg.LagInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-p.lagNow:
			// Partitions were assigned: their series exist from now on.
		}
		if err := p.updateLag(ctx, kadm.NewClient(p.client())); err != nil && ctx.Err() == nil {
			p.log.Debug("refreshing the consumer lag", "err", err)
		}
	}
}

func (p *Pipeline) updateLag(ctx context.Context, adm *kadm.Client) error {
	p.ownedMu.Lock()
	owned := make([]int32, 0, len(p.owned))
	for part := range p.owned {
		owned = append(owned, part)
	}
	p.ownedMu.Unlock()
	if len(owned) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, p.cfg.LagInterval)
	defer cancel()
	committed, err := adm.FetchOffsets(ctx, p.cfg.GroupID)
	if err != nil {
		return err
	}
	ends, err := adm.ListEndOffsets(ctx, p.cfg.InputTopic)
	if err != nil {
		return err
	}
	starts, err := adm.ListStartOffsets(ctx, p.cfg.InputTopic)
	if err != nil {
		return err
	}
	p.ownedMu.Lock()
	defer p.ownedMu.Unlock()
	for _, part := range owned {
		if !p.owned[part] {
			continue // revoked meanwhile
		}
		end, ok := ends.Lookup(p.cfg.InputTopic, part)
		if !ok || end.Err != nil {
			continue
		}
		from := int64(-1)
		if c, ok := committed.Lookup(p.cfg.InputTopic, part); ok && c.Err == nil && c.At >= 0 {
			from = c.At
		} else if s, ok := starts.Lookup(p.cfg.InputTopic, part); ok && s.Err == nil {
			from = s.Offset
		}
		if from < 0 {
			continue
		}
		p.m.lag.WithLabelValues(partitionLabel(part)).Set(float64(max(0, end.Offset-from)))
	}
	return nil
}
