package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

// apiResync is a resync as the API shows it (docs/resync.md).
type apiResync struct {
	ID            string    `json:"id"`
	SpaceID       string    `json:"space_id"`
	AudienceID    string    `json:"audience_id"`
	DestinationID string    `json:"destination_id"`
	Version       int64     `json:"version"`
	StartAt       time.Time `json:"start_at"`
	CreatedBy     string    `json:"created_by"`
	Partitions    int32     `json:"partitions"`
	State         string    `json:"state"`
	Done          int64     `json:"done"`
	Total         int64     `json:"total"`
	Sent          int64     `json:"sent"`
	Finished      int32     `json:"partitions_finished"`
	Progress      []struct {
		Partition int32  `json:"partition"`
		Done      int64  `json:"done"`
		Total     int64  `json:"total"`
		Finished  bool   `json:"finished"`
		Instance  string `json:"instance"`
	} `json:"progress"`
}

// resyncPollInterval is how often --wait reads a resync's progress.
const resyncPollInterval = time.Second

func (c *configCmd) resyncCmd() *cobra.Command {
	var startAt string
	var wait bool
	cmd := &cobra.Command{
		Use:   "resync SPACE AUDIENCE DESTINATION [--start-at TIME] [--wait]",
		Short: "Re-send an audience's current members to one destination",
		Long: `Starts a resync (docs/resync.md): once the connection's newest version is in
effect (or at --start-at, an RFC 3339 time), every current member of the
audience is sent again to this destination, under the version in effect
then. It prints the resync's id; with --wait it then shows a progress bar on
standard error until every input partition has finished (exit 0), or the
resync is cancelled or failed on a partition (exit 1).`,
		Example: "  idsync config resync spa_1 aud_1 fbca_01 --wait\n  idsync config resync spa_1 aud_1 fbca_01 --start-at 2026-12-03T06:00:00Z -o json | jq -r .id",
		Args:    argsNamed("SPACE", "AUDIENCE", "DESTINATION"),
	}
	cmd.Flags().StringVar(&startAt, "start-at", "", "start at this RFC 3339 time (default: when the newest version takes effect)")
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until the resync finishes, showing its progress")
	cmd.RunE = runE(func(cmd *cobra.Command, pos []string) error {
		body := []byte("{}")
		if startAt != "" {
			t, err := time.Parse(time.RFC3339, startAt)
			if err != nil {
				return &exitError{code: ExitUsage, err: fmt.Errorf("--start-at: not an RFC 3339 time such as 2026-12-03T06:00:00Z: %q", startAt)}
			}
			body, _ = json.Marshal(map[string]time.Time{"start_at": t})
		}
		api, err := c.client()
		if err != nil {
			return err
		}
		resp, err := c.call(cmd.Context(), cmd, api, http.MethodPost, body, http.Header{"Content-Type": {"application/json"}},
			append(connectionPath(pos...), "resync")...)
		if err != nil {
			return err
		}
		var r apiResync
		if err := c.emit(resp, &r, func(w io.Writer) { resyncText(w, &r) }); err != nil {
			return err
		}
		if !wait {
			return nil
		}
		if r.ID == "" {
			_ = json.Unmarshal(resp.Body, &r)
		}
		return c.waitResync(cmd, api, r.ID)
	})
	return cmd
}

func (c *configCmd) resyncStatusCmd() *cobra.Command {
	var wait bool
	cmd := &cobra.Command{
		Use:     "resync-status ID [--wait]",
		Short:   "Show a resync's state and progress",
		Example: "  idsync config resync-status rs_0123456789abcdef --wait",
		Args:    argsNamed("ID"),
	}
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until the resync finishes, showing its progress")
	cmd.RunE = runE(func(cmd *cobra.Command, pos []string) error {
		api, err := c.client()
		if err != nil {
			return err
		}
		if wait {
			return c.waitResync(cmd, api, pos[0])
		}
		resp, err := c.call(cmd.Context(), cmd, api, http.MethodGet, nil, nil, "v1", "resyncs", pos[0])
		if err != nil {
			return err
		}
		var r apiResync
		return c.emit(resp, &r, func(w io.Writer) { resyncText(w, &r) })
	})
	return cmd
}

func (c *configCmd) resyncCancelCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "resync-cancel ID",
		Short:   "Cancel a resync: partitions not finished send nothing more",
		Example: "  idsync config resync-cancel rs_0123456789abcdef",
		Args:    argsNamed("ID"),
	}
	cmd.RunE = runE(func(cmd *cobra.Command, pos []string) error {
		api, err := c.client()
		if err != nil {
			return err
		}
		resp, err := c.call(cmd.Context(), cmd, api, http.MethodDelete, nil, nil, "v1", "resyncs", pos[0])
		if err != nil {
			return err
		}
		var r apiResync
		return c.emit(resp, &r, func(w io.Writer) { resyncText(w, &r) })
	})
	return cmd
}

func (c *configCmd) resyncsCmd() *cobra.Command {
	return c.readCmd(&cobra.Command{
		Use:     "resyncs SPACE AUDIENCE DESTINATION",
		Short:   "List a connection's resyncs, newest first",
		Example: "  idsync config resyncs spa_1 aud_1 fbca_01",
		Args:    argsNamed("SPACE", "AUDIENCE", "DESTINATION"),
	}, func(pos []string) []string { return append(connectionPath(pos...), "resyncs") }, func(resp *apiResponse, _ []string) error {
		var l struct {
			Resyncs []apiResync `json:"resyncs"`
		}
		return c.emit(resp, &l, func(w io.Writer) {
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tSTATE\tVERSION\tSTART_AT\tDONE/TOTAL\tBY")
			for _, r := range l.Resyncs {
				fmt.Fprintf(tw, "%s\t%s\tv%d\t%s\t%d/%d\t%s\n", r.ID, r.State, r.Version, r.StartAt.UTC().Format(time.RFC3339), r.Done, r.Total, r.CreatedBy)
			}
			tw.Flush()
		})
	})
}

// waitResync polls resync id until it is finished (nil) or cancelled (exit
// 1), drawing its progress on standard error; with -o json it prints the
// final state.
func (c *configCmd) waitResync(cmd *cobra.Command, api *apiClient, id string) error {
	ctx := cmd.Context()
	for {
		resp, err := c.call(ctx, cmd, api, http.MethodGet, nil, nil, "v1", "resyncs", id)
		if err != nil {
			return err
		}
		var r apiResync
		if err := json.Unmarshal(resp.Body, &r); err != nil {
			return &exitError{code: ExitUnavailable, err: fmt.Errorf("the server's answer is not the expected JSON: %w", err)}
		}
		if r.State == "finished" || r.State == "cancelled" || r.State == "failed" {
			progressBar(c.env.Stderr, "resync", int(r.Done), int(r.Total))
			fmt.Fprintln(c.env.Stderr)
			if err := c.emit(resp, &r, func(w io.Writer) { resyncText(w, &r) }); err != nil {
				return err
			}
			if r.State != "finished" {
				return &exitError{code: ExitFailure, err: fmt.Errorf("resync %s ended %s", id, r.State)}
			}
			return nil
		}
		progressBar(c.env.Stderr, "resync "+r.State, int(r.Done), int(r.Total))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(resyncPollInterval):
		}
	}
}

func resyncText(w io.Writer, r *apiResync) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "resync\t%s\n", r.ID)
	fmt.Fprintf(tw, "connection\t%s/%s/%s (version %d)\n", r.SpaceID, r.AudienceID, r.DestinationID, r.Version)
	fmt.Fprintf(tw, "state\t%s\n", r.State)
	fmt.Fprintf(tw, "start_at\t%s\n", r.StartAt.UTC().Format(time.RFC3339))
	fmt.Fprintf(tw, "members\t%d of %d passed, %d records sent\n", r.Done, r.Total, r.Sent)
	fmt.Fprintf(tw, "partitions\t%d of %d finished\n", r.Finished, r.Partitions)
	tw.Flush()
}
