package app

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/idsync/idsync/admin"
	"github.com/idsync/idsync/config"
	"github.com/idsync/idsync/demo"
	"github.com/idsync/idsync/idsync"
)

// banner prints where everything listens and how to look at it.
func banner(w io.Writer, cfg *config.Config, ops, adm *server, emb *embedded, tokens []admin.Token) {
	mode := "connected to Kafka " + strings.Join(cfg.Kafka.Brokers, ",")
	if emb != nil {
		mode = "embedded: in-process Kafka (kfake) and Redis (miniredis), demo traffic at " +
			fmt.Sprint(cfg.Embedded.DemoRate) + " events/s"
	}
	fmt.Fprintf(w, "idsync is running (%s, %s)\n", mode, cfg.Kafka.Delivery)
	fmt.Fprintf(w, "  kafka      %s   input %s, dead letters %s, outputs %s\n",
		strings.Join(cfg.Kafka.Brokers, ","), cfg.Kafka.InputTopic, cfg.Kafka.DLQTopic, cfg.Kafka.OutputTopicTemplate)
	fmt.Fprintf(w, "  redis      %s\n", strings.Join(cfg.Redis.Addrs, ","))
	fmt.Fprintf(w, "  metrics    http://%s/metrics   (health: /healthz, /readyz)\n", ops.addr())
	if adm != nil {
		fmt.Fprintf(w, "  admin API  %s\n", adm.url())
		if cfg.Admin.Console {
			fmt.Fprintf(w, "  console    %s/ui/\n", adm.url())
		}
	}
	if emb == nil {
		return
	}
	brokers := strings.Join(cfg.Kafka.Brokers, ",")
	tmpl, _ := cfg.Kafka.TopicTemplate()
	fmt.Fprintf(w, "\nTry, in another terminal:\n")
	fmt.Fprintf(w, "  idsync tail %s --brokers %s\n", tmpl.Topic(demo.Connections()[0].Destination), brokers)
	fmt.Fprintf(w, "  idsync tail %s --brokers %s\n", cfg.Kafka.DLQTopic, brokers)
	if adm != nil && len(tokens) > 0 && tokens[0].Secret == DemoToken {
		if cfg.Admin.Console {
			fmt.Fprintf(w, "  open %s/ui/ and sign in with the token %s\n", adm.url(), DemoToken)
		}
		fmt.Fprintf(w, "  export IDSYNC_ADMIN_ADDR=%s IDSYNC_ADMIN_TOKEN=%s   (the demo token, write scope)\n", adm.url(), DemoToken)
		fmt.Fprintf(w, "  idsync config list %s %s\n", demo.Space, demo.Connections()[0].Audience)
		fmt.Fprintf(w, "  idsync config history %s %s %s\n", demo.Space, demo.Connections()[0].Audience, demo.Connections()[0].Destination)
	}
	fmt.Fprintf(w, "  curl -s http://%s/metrics | grep ^idsync_\n", ops.addr())
	fmt.Fprintf(w, "Ctrl-C stops idsync cleanly.\n\n")
}

// summarize prints one line every interval: input rate, outputs per
// destination type, dead letters, skips and lag, read from the registry.
func summarize(ctx context.Context, w io.Writer, g prometheus.Gatherer, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	prevIn := 0.0
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			s := snapshot(g)
			in := s.sum("idsync_input_records_total", "")
			var outs []string
			for _, t := range idsync.DestinationTypes {
				outs = append(outs, fmt.Sprintf("%s %.0f", shortType(t), s.sum("idsync_output_records_total", string(t))))
			}
			fmt.Fprintf(w, "%s  in %.1f/s (%.0f)  out: %s  dlq %.0f  skipped %.0f  unmatched %.0f  lag %.0f\n",
				now.Format("15:04:05"), (in-prevIn)/interval.Seconds(), in, strings.Join(outs, ", "),
				s.sum("idsync_dlq_records_total", ""), s.sum("idsync_skipped_total", ""),
				s.sum("idsync_unmatched_total", ""), s.sum("idsync_consumer_lag_records", ""))
			prevIn = in
		}
	}
}

func shortType(t idsync.DestinationType) string {
	switch t {
	case idsync.FacebookCustomAudiences:
		return "facebook"
	case idsync.GoogleAdsRemarketingLists:
		return "google"
	}
	return string(t)
}

// metricsSnapshot is a gathered registry, by metric name.
type metricsSnapshot map[string]*dto.MetricFamily

func snapshot(g prometheus.Gatherer) metricsSnapshot {
	fams, err := g.Gather()
	s := metricsSnapshot{}
	if err != nil {
		return s
	}
	for _, f := range fams {
		s[f.GetName()] = f
	}
	return s
}

// sum adds the values of a counter or gauge family, over the series whose
// first label equals label (every series when label is "").
func (s metricsSnapshot) sum(name, label string) float64 {
	f := s[name]
	if f == nil {
		return 0
	}
	total := 0.0
	for _, m := range f.GetMetric() {
		if label != "" && (len(m.GetLabel()) == 0 || m.GetLabel()[0].GetValue() != label) {
			continue
		}
		switch {
		case m.Counter != nil:
			total += m.GetCounter().GetValue()
		case m.Gauge != nil:
			total += m.GetGauge().GetValue()
		}
	}
	return total
}
