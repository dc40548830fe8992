package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"
)

// configCmd holds what the "idsync config" subcommands share.
type configCmd struct {
	env    Env
	admin  adminFlags
	output *string
}

// newConfigCmd is "idsync config" and its subcommands.
func newConfigCmd(env Env) *cobra.Command {
	c := &configCmd{env: env}
	group := newGroup("config", "Manage connections through the admin API", `Manage connections through the admin API (docs/admin-api.md).

FILE may be JSON (sent as written) or YAML (converted to JSON); "-" reads
standard input. Flags may come before or after the arguments. The default
output is for people; -o json prints the server's JSON unchanged, for scripts.

The token comes from --token, --token-file, $IDSYNC_ADMIN_TOKEN or
$IDSYNC_ADMIN_TOKEN_FILE, in that order: prefer the file or the environment,
a flag shows in ps.

Exit codes: 0 done; 2 bad usage or unreadable file; 3 refused by the server
(4xx: status, message and every problem on stderr); 4 server unreachable, or
it failed (5xx).`)
	group.Example = `  export IDSYNC_ADMIN_ADDR=http://127.0.0.1:8088 IDSYNC_ADMIN_TOKEN_FILE=~/.idsync-token
  idsync config put spa_1 aud_1 fbca_01 -f fbca.yaml
  idsync config list spa_1 aud_1 -o json | jq '.connections[].destination_id'`
	c.admin.bind(group)
	c.output = bindOutput(group, true, "output: text (for people) or json (the server's JSON unchanged)")
	group.AddCommand(c.putCmd(), c.getCmd(), c.listCmd(), c.deleteCmd(), c.historyCmd(), c.previewCmd(), c.typesCmd(),
		c.resyncCmd(), c.resyncStatusCmd(), c.resyncCancelCmd(), c.resyncsCmd())
	return group
}

// client checks -o and returns the API client.
func (c *configCmd) client() (*apiClient, error) {
	if err := checkOutput(*c.output); err != nil {
		return nil, err
	}
	return c.admin.client(c.env)
}

// call sends a request and reports failures: it returns the response, or
// an exit error after printing why (a refusal with each problem).
func (c *configCmd) call(ctx context.Context, cmd *cobra.Command, api *apiClient, method string, body []byte, header http.Header, segments ...string) (*apiResponse, error) {
	resp, err := api.do(ctx, method, body, header, segments...)
	var ref *refusal
	switch {
	case errors.As(err, &ref):
		fmt.Fprintf(c.env.Stderr, "%s: refused (%d %s): %s\n", cmd.CommandPath(), ref.Status, http.StatusText(ref.Status), ref.Message)
		for _, p := range ref.Problems {
			field := p.Field
			if field == "" {
				field = "(body)"
			}
			fmt.Fprintf(c.env.Stderr, "  %s: %s\n", field, p.Message)
		}
		return nil, exitCode(exitFor(err))
	case err != nil:
		return nil, &exitError{code: exitFor(err), err: err}
	}
	return resp, nil
}

// emit prints the response: as received with -o json, else through text.
func (c *configCmd) emit(resp *apiResponse, v any, text func(w io.Writer)) error {
	if *c.output == outputJSON {
		c.env.Stdout.Write(resp.Body)
		if !bytes.HasSuffix(resp.Body, []byte("\n")) {
			io.WriteString(c.env.Stdout, "\n")
		}
		return nil
	}
	if err := json.Unmarshal(resp.Body, v); err != nil {
		return &exitError{code: ExitUnavailable, err: fmt.Errorf("the server's answer is not the expected JSON: %w", err)}
	}
	text(c.env.Stdout)
	return nil
}

// Views of the API's answers, as much as the text output needs.
type (
	apiVersion struct {
		Version     int64           `json:"version"`
		UpdatedAt   time.Time       `json:"updated_at"`
		EffectiveAt time.Time       `json:"effective_at"`
		Deleted     bool            `json:"deleted"`
		Config      json.RawMessage `json:"config"`
	}
	apiEdit struct {
		SpaceID       string `json:"space_id"`
		AudienceID    string `json:"audience_id"`
		DestinationID string `json:"destination_id"`
		State         string `json:"state"`
		apiVersion
	}
	apiConnection struct {
		DestinationID string      `json:"destination_id"`
		Active        *apiVersion `json:"active"`
		Pending       *apiVersion `json:"pending"`
	}
	apiConfigSummary struct {
		DestinationType string `json:"destination_type"`
		Setup           string `json:"setup"`
	}
)

func (c *configCmd) putCmd() *cobra.Command {
	var file string
	var ifMatch int64
	cmd := &cobra.Command{
		Use:   "put SPACE AUDIENCE DESTINATION -f FILE|- [--if-match N]",
		Short: "Create or edit a connection",
		Long: `Creates or edits the connection of DESTINATION to AUDIENCE in SPACE with the
configuration in FILE. The new version applies from its effective time (now
for a new connection, after connections.activation_delay for an edit).`,
		Example: `  idsync config put spa_1 aud_1 fbca_01 -f fbca.yaml
  idsync config put spa_1 aud_1 fbca_01 -f edited.json --if-match 1   # only if version 1 is the newest
  cat conn.yaml | idsync config put spa_1 aud_1 it_01 -f -`,
		Args: argsNamed("SPACE", "AUDIENCE", "DESTINATION"),
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "configuration file, JSON or YAML (- for standard input); required")
	cmd.Flags().Int64Var(&ifMatch, "if-match", 0, "edit only if the newest version is N")
	cmd.RunE = runE(func(cmd *cobra.Command, pos []string) error {
		api, err := c.client()
		if err != nil {
			return err
		}
		if file == "" {
			return usageErrorf("-f FILE is required")
		}
		body, err := c.readJSON(file)
		if err != nil {
			return &exitError{code: ExitUsage, err: err}
		}
		resp, err := c.call(cmd.Context(), cmd, api, http.MethodPut, body, ifMatchHeader(ifMatch), connectionPath(pos...)...)
		if err != nil {
			return err
		}
		return c.emitEdit(resp, false)
	})
	return cmd
}

// emitEdit prints the answer to a put or a delete.
func (c *configCmd) emitEdit(resp *apiResponse, deleted bool) error {
	var e apiEdit
	return c.emit(resp, &e, func(w io.Writer) {
		verb := "updated"
		if resp.Status == http.StatusCreated {
			verb = "created"
		}
		if deleted {
			verb = "deleted"
		}
		fmt.Fprintf(w, "%s %s/%s/%s: version %d %s\n", verb, e.SpaceID, e.AudienceID, e.DestinationID, e.Version, stateText(e.State, e.EffectiveAt))
	})
}

// ifMatchHeader is the If-Match header of --if-match N (none for 0).
func ifMatchHeader(n int64) http.Header {
	header := http.Header{}
	if n > 0 {
		header.Set("If-Match", strconv.Quote(strconv.FormatInt(n, 10)))
	}
	return header
}

func (c *configCmd) deleteCmd() *cobra.Command {
	var ifMatch int64
	cmd := &cobra.Command{
		Use:   "delete SPACE AUDIENCE DESTINATION [--if-match N]",
		Short: "Delete a connection",
		Long: `Deletes the connection: a new version that removes it, effective after
connections.activation_delay like any edit.`,
		Example: "  idsync config delete spa_1 aud_1 fbca_01 --if-match 3",
		Args:    argsNamed("SPACE", "AUDIENCE", "DESTINATION"),
	}
	cmd.Flags().Int64Var(&ifMatch, "if-match", 0, "delete only if the newest version is N")
	cmd.RunE = runE(func(cmd *cobra.Command, pos []string) error {
		api, err := c.client()
		if err != nil {
			return err
		}
		resp, err := c.call(cmd.Context(), cmd, api, http.MethodDelete, nil, ifMatchHeader(ifMatch), connectionPath(pos...)...)
		if err != nil {
			return err
		}
		return c.emitEdit(resp, true)
	})
	return cmd
}

func (c *configCmd) getCmd() *cobra.Command {
	return c.readCmd(&cobra.Command{
		Use:     "get SPACE AUDIENCE DESTINATION",
		Short:   "Show a connection: its active and pending versions",
		Example: "  idsync config get spa_1 aud_1 fbca_01\n  idsync config get spa_1 aud_1 fbca_01 -o json | jq .pending.version",
		Args:    argsNamed("SPACE", "AUDIENCE", "DESTINATION"),
	}, func(pos []string) []string { return connectionPath(pos...) }, c.getText)
}

func (c *configCmd) getText(resp *apiResponse, _ []string) error {
	var conn apiConnection
	return c.emit(resp, &conn, func(w io.Writer) {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "destination\t%s\n", conn.DestinationID)
		fmt.Fprintf(tw, "active\t%s\n", versionText(conn.Active))
		fmt.Fprintf(tw, "pending\t%s\n", versionText(conn.Pending))
		tw.Flush()
		for _, v := range []struct {
			name string
			v    *apiVersion
		}{{"active", conn.Active}, {"pending", conn.Pending}} {
			if v.v == nil || v.v.Deleted {
				continue
			}
			fmt.Fprintf(w, "\n%s configuration (version %d):\n%s\n", v.name, v.v.Version, indentJSON(v.v.Config))
		}
	})
}

func (c *configCmd) listCmd() *cobra.Command {
	return c.readCmd(&cobra.Command{
		Use:     "list SPACE AUDIENCE",
		Short:   "List the connections of an audience",
		Example: "  idsync config list spa_1 aud_1\n  idsync config list spa_1 aud_1 -o json | jq -r '.connections[].destination_id'",
		Args:    argsNamed("SPACE", "AUDIENCE"),
	}, func(pos []string) []string {
		return []string{"v1", "spaces", pos[0], "audiences", pos[1], "connections"}
	}, c.listText)
}

func (c *configCmd) listText(resp *apiResponse, pos []string) error {
	var l struct {
		Connections []apiConnection `json:"connections"`
	}
	return c.emit(resp, &l, func(w io.Writer) {
		if len(l.Connections) == 0 {
			fmt.Fprintf(w, "no connections for %s/%s\n", pos[0], pos[1])
			return
		}
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "DESTINATION\tTYPE\tSETUP\tACTIVE\tPENDING\tPENDING EFFECTIVE_AT")
		for _, conn := range l.Connections {
			cur := conn.Active
			if cur == nil {
				cur = conn.Pending
			}
			var sum apiConfigSummary
			if cur != nil {
				_ = json.Unmarshal(cur.Config, &sum)
			}
			active, pending, at := "-", "-", "-"
			if conn.Active != nil {
				active = "v" + strconv.FormatInt(conn.Active.Version, 10)
			}
			if p := conn.Pending; p != nil {
				pending = "v" + strconv.FormatInt(p.Version, 10)
				if p.Deleted {
					pending += " (delete)"
				}
				at = p.EffectiveAt.UTC().Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", conn.DestinationID, orDash(sum.DestinationType), orDash(sum.Setup), active, pending, at)
		}
		tw.Flush()
	})
}

func (c *configCmd) historyCmd() *cobra.Command {
	return c.readCmd(&cobra.Command{
		Use:     "history SPACE AUDIENCE DESTINATION",
		Short:   "Show a connection's audit log, newest first",
		Example: "  idsync config history spa_1 aud_1 fbca_01",
		Args:    argsNamed("SPACE", "AUDIENCE", "DESTINATION"),
	}, func(pos []string) []string { return append(connectionPath(pos...), "history") }, c.historyText)
}

func (c *configCmd) historyText(resp *apiResponse, _ []string) error {
	var h struct {
		Entries []struct {
			Version     int64           `json:"version"`
			Action      string          `json:"action"`
			Actor       string          `json:"actor"`
			At          time.Time       `json:"at"`
			EffectiveAt time.Time       `json:"effective_at"`
			New         json.RawMessage `json:"new"`
		} `json:"entries"`
	}
	return c.emit(resp, &h, func(w io.Writer) {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "VERSION\tACTION\tACTOR\tAT\tEFFECTIVE_AT\tTYPE\tSETUP")
		for _, e := range h.Entries {
			var sum apiConfigSummary
			_ = json.Unmarshal(e.New, &sum)
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Version, e.Action, e.Actor,
				e.At.UTC().Format(time.RFC3339), e.EffectiveAt.UTC().Format(time.RFC3339), orDash(sum.DestinationType), orDash(sum.Setup))
		}
		tw.Flush()
	})
}

func (c *configCmd) typesCmd() *cobra.Command {
	return c.readCmd(&cobra.Command{
		Use:     "types",
		Short:   "List the destination types and their identifier keys",
		Example: "  idsync config types",
		Args:    argsNamed(),
	}, func([]string) []string { return []string{"v1", "destination-types"} }, c.typesText)
}

// readCmd completes cmd as a GET of the path made from its arguments,
// printed by text (or as received with -o json).
func (c *configCmd) readCmd(cmd *cobra.Command, path func(pos []string) []string, text func(resp *apiResponse, pos []string) error) *cobra.Command {
	cmd.RunE = runE(func(cmd *cobra.Command, pos []string) error {
		api, err := c.client()
		if err != nil {
			return err
		}
		resp, err := c.call(cmd.Context(), cmd, api, http.MethodGet, nil, nil, path(pos)...)
		if err != nil {
			return err
		}
		return text(resp, pos)
	})
	return cmd
}

func (c *configCmd) typesText(resp *apiResponse, _ []string) error {
	var t struct {
		DestinationTypes []struct {
			Type       string   `json:"type"`
			Kind       string   `json:"kind"`
			Keys       []string `json:"keys"`
			KeyPattern string   `json:"key_pattern"`
		} `json:"destination_types"`
	}
	return c.emit(resp, &t, func(w io.Writer) {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "TYPE\tKIND\tDESTINATION KEYS")
		for _, ti := range t.DestinationTypes {
			keys := strings.Join(ti.Keys, ", ")
			if keys == "" {
				keys = "free text matching " + ti.KeyPattern
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\n", ti.Type, ti.Kind, keys)
		}
		tw.Flush()
	})
}

func (c *configCmd) previewCmd() *cobra.Command {
	var file, connFile, eventFile, dest string
	cmd := &cobra.Command{
		Use:   "preview (-f REQUEST|- | --connection FILE --event FILE [--destination ID])",
		Short: "Show the records a configuration would make of an event",
		Long: `Asks the server what idsync would publish for an event under a connection
configuration, without storing anything: the records, or the dead letter.
The request is one file ({"destination_id","connection","event"}) or a
connection file and an event file.`,
		Example: `  idsync config preview --connection fbca.yaml --event event.json --destination fbca_01
  idsync config preview -f request.json -o json | jq '.records[].value'`,
		Args: argsNamed(),
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "preview request (destination_id, connection, event), JSON or YAML (- for standard input)")
	cmd.Flags().StringVar(&connFile, "connection", "", "connection configuration file, JSON or YAML")
	cmd.Flags().StringVar(&eventFile, "event", "", "input event file, JSON or YAML")
	cmd.Flags().StringVar(&dest, "destination", "", "destination id (default preview)")
	cmd.RunE = runE(func(cmd *cobra.Command, _ []string) error {
		api, err := c.client()
		if err != nil {
			return err
		}
		body, err := c.previewRequest(file, connFile, eventFile, dest)
		if err != nil {
			return &exitError{code: ExitUsage, err: err}
		}
		resp, err := c.call(cmd.Context(), cmd, api, http.MethodPost, body, nil, "v1", "preview")
		if err != nil {
			return err
		}
		return c.previewText(resp)
	})
	return cmd
}

// previewRequest builds the preview request from the flags.
func (c *configCmd) previewRequest(file, connFile, eventFile, dest string) ([]byte, error) {
	switch {
	case file != "" && (connFile != "" || eventFile != "" || dest != ""):
		return nil, errors.New("-f excludes --connection, --event and --destination")
	case file != "":
		return c.readJSON(file)
	case connFile != "" && eventFile != "":
		conn, err := c.readJSON(connFile)
		if err != nil {
			return nil, err
		}
		ev, err := c.readJSON(eventFile)
		if err != nil {
			return nil, err
		}
		req := map[string]any{"connection": json.RawMessage(conn), "event": json.RawMessage(ev)}
		if dest != "" {
			req["destination_id"] = dest
		}
		return json.Marshal(req)
	}
	return nil, errors.New("want -f REQUEST, or --connection FILE and --event FILE")
}

func (c *configCmd) previewText(resp *apiResponse) error {
	var p struct {
		Records []struct {
			Topic   string            `json:"topic"`
			Key     string            `json:"key"`
			Headers map[string]string `json:"headers"`
			Value   json.RawMessage   `json:"value"`
		} `json:"records"`
		Unmatched          bool `json:"unmatched"`
		InvalidIdentifiers int  `json:"invalid_identifiers"`
		DLQ                *struct {
			Code  string `json:"code"`
			Error string `json:"error"`
		} `json:"dlq"`
	}
	return c.emit(resp, &p, func(w io.Writer) {
		if p.DLQ != nil {
			fmt.Fprintf(w, "dead letter: %s: %s\n", p.DLQ.Code, p.DLQ.Error)
		}
		if p.Unmatched {
			fmt.Fprintln(w, "unmatched: nothing to send for this profile")
		}
		if p.InvalidIdentifiers > 0 {
			fmt.Fprintf(w, "invalid identifiers (not sent): %d\n", p.InvalidIdentifiers)
		}
		fmt.Fprintf(w, "%d record(s)\n", len(p.Records))
		for i, r := range p.Records {
			fmt.Fprintf(w, "\nrecord %d: topic %s, key %s, config version %s\n%s\n", i, r.Topic, r.Key, r.Headers["idsync-config-version"], indentJSON(r.Value))
		}
	})
}

// connectionPath is the API path of a connection.
func connectionPath(ids ...string) []string {
	return []string{"v1", "spaces", ids[0], "audiences", ids[1], "connections", ids[2]}
}

// readJSON reads a file ("-" for standard input) holding JSON or YAML and
// returns JSON. Valid JSON is sent as it is, so the server sees the bytes
// the user wrote.
func (c *configCmd) readJSON(name string) ([]byte, error) {
	var data []byte
	var err error
	if name == "-" {
		data, err = io.ReadAll(c.env.Stdin)
	} else {
		data, err = os.ReadFile(name)
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	out, err := yamlToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return out, nil
}

// yamlToJSON returns data as JSON: as is when it already is JSON, else
// decoded as one YAML document.
func yamlToJSON(data []byte) ([]byte, error) {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return nil, errors.New("empty input")
	}
	if json.Valid(trimmed) {
		return trimmed, nil
	}
	var v any
	if err := yaml.Unmarshal(data, &v); err != nil {
		return nil, fmt.Errorf("neither JSON nor YAML: %w", err)
	}
	v, err := jsonable(v)
	if err != nil {
		return nil, err
	}
	return json.Marshal(v)
}

// jsonable converts what yaml decodes into values encoding/json accepts.
func jsonable(v any) (any, error) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			j, err := jsonable(e)
			if err != nil {
				return nil, err
			}
			x[k] = j
		}
		return x, nil
	case map[any]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			j, err := jsonable(e)
			if err != nil {
				return nil, err
			}
			m[fmt.Sprint(k)] = j
		}
		return m, nil
	case []any:
		for i, e := range x {
			j, err := jsonable(e)
			if err != nil {
				return nil, err
			}
			x[i] = j
		}
		return x, nil
	case time.Time:
		return x.Format(time.RFC3339Nano), nil
	case float64:
		if x != x || x > 1e308 || x < -1e308 {
			return nil, fmt.Errorf("the number %v has no JSON form", x)
		}
	}
	return v, nil
}

func stateText(state string, effectiveAt time.Time) string {
	at := effectiveAt.UTC().Format(time.RFC3339)
	if state == "pending" {
		return "pending, effective at " + at
	}
	return state + " since " + at
}

func versionText(v *apiVersion) string {
	if v == nil {
		return "-"
	}
	s := fmt.Sprintf("version %d, updated %s, effective %s", v.Version,
		v.UpdatedAt.UTC().Format(time.RFC3339), v.EffectiveAt.UTC().Format(time.RFC3339))
	if v.Deleted {
		s += " (deletes the connection)"
	} else {
		var sum apiConfigSummary
		if json.Unmarshal(v.Config, &sum) == nil {
			s += ", " + sum.DestinationType + " " + sum.Setup
		}
	}
	return s
}

func indentJSON(raw json.RawMessage) string {
	var b bytes.Buffer
	if err := json.Indent(&b, raw, "  ", "  "); err != nil {
		return "  " + string(raw)
	}
	return "  " + b.String()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
