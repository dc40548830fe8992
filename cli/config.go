package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"go.yaml.in/yaml/v3"
)

const configUsage = `idsync config: manage connections through the admin API

Usage:
  idsync config put SPACE AUDIENCE DESTINATION -f FILE|- [--if-match N]
  idsync config get SPACE AUDIENCE DESTINATION
  idsync config list SPACE AUDIENCE
  idsync config delete SPACE AUDIENCE DESTINATION [--if-match N]
  idsync config history SPACE AUDIENCE DESTINATION
  idsync config preview -f REQUEST|-
  idsync config preview --connection FILE --event FILE [--destination ID]
  idsync config types

FILE may be JSON or YAML ("-" reads standard input).

Flags of every command:
  --addr URL     admin API address (default $IDSYNC_ADMIN_ADDR, else ` + defaultAdminAddr + `)
  --token TOKEN  bearer token (default $IDSYNC_ADMIN_TOKEN)
  -o FORMAT      output: text (default) or json (the server's JSON)

Exit codes: 0 done; 1 refused by the server (its messages on stderr);
2 bad usage or server unreachable.
`

// configCmd is one "idsync config" subcommand being run.
type configCmd struct {
	env    Env
	name   string
	fs     *flag.FlagSet
	addr   string
	token  string
	output string
	api    *apiClient
}

// runConfig runs "idsync config SUBCOMMAND ...".
func runConfig(ctx context.Context, env Env, args []string) int {
	if len(args) == 0 {
		fmt.Fprint(env.Stderr, configUsage)
		return ExitUsage
	}
	sub, args := args[0], args[1:]
	c := &configCmd{env: env, name: "idsync config " + sub}
	c.fs = flag.NewFlagSet(c.name, flag.ContinueOnError)
	c.fs.SetOutput(env.Stderr)
	c.fs.Usage = func() { fmt.Fprint(env.Stderr, configUsage) }
	addr := env.Getenv(envAdminAddr)
	if addr == "" {
		addr = defaultAdminAddr
	}
	c.fs.StringVar(&c.addr, "addr", addr, "admin API address")
	c.fs.StringVar(&c.token, "token", env.Getenv(envAdminToken), "bearer token")
	c.fs.StringVar(&c.output, "o", "text", "output format: text or json")

	switch sub {
	case "put":
		return c.put(ctx, args)
	case "get":
		return c.get(ctx, args)
	case "list":
		return c.list(ctx, args)
	case "delete":
		return c.delete(ctx, args)
	case "history":
		return c.history(ctx, args)
	case "preview":
		return c.preview(ctx, args)
	case "types":
		return c.types(ctx, args)
	case "help", "-h", "--help":
		fmt.Fprint(env.Stdout, configUsage)
		return ExitOK
	}
	fmt.Fprintf(env.Stderr, "idsync config: unknown command %q\n\n%s", sub, configUsage)
	return ExitUsage
}

// parse parses flags placed anywhere among the arguments and checks the
// number of positional arguments; it returns false after printing why.
func (c *configCmd) parse(args []string, names ...string) ([]string, bool) {
	var pos []string
	for {
		if err := c.fs.Parse(args); err != nil {
			return nil, false // the flag package printed why
		}
		args = c.fs.Args()
		if len(args) == 0 {
			break
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
	if len(pos) != len(names) {
		c.usagef("want %d arguments (%s), got %d", len(names), strings.Join(names, " "), len(pos))
		return nil, false
	}
	if c.output != "text" && c.output != "json" {
		c.usagef("-o %q: want text or json", c.output)
		return nil, false
	}
	api, err := newAPIClient(c.addr, c.token)
	if err != nil {
		c.usagef("%v", err)
		return nil, false
	}
	c.api = api
	return pos, true
}

func (c *configCmd) usagef(format string, args ...any) {
	fmt.Fprintf(c.env.Stderr, "%s: %s\nRun \"idsync config help\" for usage.\n", c.name, fmt.Sprintf(format, args...))
}

// call sends a request and reports failures: it returns the response and
// ExitOK, or nil and the exit code after printing why.
func (c *configCmd) call(ctx context.Context, method string, body []byte, header http.Header, segments ...string) (*apiResponse, int) {
	resp, err := c.api.do(ctx, method, body, header, segments...)
	var ref *refusal
	switch {
	case errors.As(err, &ref):
		fmt.Fprintf(c.env.Stderr, "%s: refused (%d %s): %s\n", c.name, ref.Status, http.StatusText(ref.Status), ref.Message)
		for _, p := range ref.Problems {
			field := p.Field
			if field == "" {
				field = "(body)"
			}
			fmt.Fprintf(c.env.Stderr, "  %s: %s\n", field, p.Message)
		}
		return nil, ExitRefused
	case err != nil:
		fmt.Fprintf(c.env.Stderr, "%s: %v\n", c.name, err)
		return nil, ExitUsage
	}
	return resp, ExitOK
}

// emit prints the response: as received with -o json, else through text.
func (c *configCmd) emit(resp *apiResponse, v any, text func(w io.Writer)) int {
	if c.output == "json" {
		c.env.Stdout.Write(resp.Body)
		if !bytes.HasSuffix(resp.Body, []byte("\n")) {
			io.WriteString(c.env.Stdout, "\n")
		}
		return ExitOK
	}
	if err := json.Unmarshal(resp.Body, v); err != nil {
		fmt.Fprintf(c.env.Stderr, "%s: the server's answer is not the expected JSON: %v\n", c.name, err)
		return ExitUsage
	}
	text(c.env.Stdout)
	return ExitOK
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

func (c *configCmd) put(ctx context.Context, args []string) int {
	file := c.fs.String("f", "", "configuration file, JSON or YAML (- for standard input)")
	ifMatch := c.fs.Int64("if-match", 0, "edit only if the newest version is N")
	pos, ok := c.parse(args, "SPACE", "AUDIENCE", "DESTINATION")
	if !ok {
		return ExitUsage
	}
	if *file == "" {
		c.usagef("-f FILE is required")
		return ExitUsage
	}
	body, err := c.readJSON(*file)
	if err != nil {
		c.usagef("%v", err)
		return ExitUsage
	}
	header := http.Header{}
	if *ifMatch > 0 {
		header.Set("If-Match", strconv.Quote(strconv.FormatInt(*ifMatch, 10)))
	}
	resp, code := c.call(ctx, http.MethodPut, body, header, connectionPath(pos...)...)
	if resp == nil {
		return code
	}
	var e apiEdit
	return c.emit(resp, &e, func(w io.Writer) {
		verb := "updated"
		if resp.Status == http.StatusCreated {
			verb = "created"
		}
		fmt.Fprintf(w, "%s %s/%s/%s: version %d %s\n", verb, e.SpaceID, e.AudienceID, e.DestinationID, e.Version, stateText(e.State, e.EffectiveAt))
	})
}

func (c *configCmd) delete(ctx context.Context, args []string) int {
	ifMatch := c.fs.Int64("if-match", 0, "delete only if the newest version is N")
	pos, ok := c.parse(args, "SPACE", "AUDIENCE", "DESTINATION")
	if !ok {
		return ExitUsage
	}
	header := http.Header{}
	if *ifMatch > 0 {
		header.Set("If-Match", strconv.Quote(strconv.FormatInt(*ifMatch, 10)))
	}
	resp, code := c.call(ctx, http.MethodDelete, nil, header, connectionPath(pos...)...)
	if resp == nil {
		return code
	}
	var e apiEdit
	return c.emit(resp, &e, func(w io.Writer) {
		fmt.Fprintf(w, "deleted %s/%s/%s: version %d %s\n", e.SpaceID, e.AudienceID, e.DestinationID, e.Version, stateText(e.State, e.EffectiveAt))
	})
}

func (c *configCmd) get(ctx context.Context, args []string) int {
	pos, ok := c.parse(args, "SPACE", "AUDIENCE", "DESTINATION")
	if !ok {
		return ExitUsage
	}
	resp, code := c.call(ctx, http.MethodGet, nil, nil, connectionPath(pos...)...)
	if resp == nil {
		return code
	}
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

func (c *configCmd) list(ctx context.Context, args []string) int {
	pos, ok := c.parse(args, "SPACE", "AUDIENCE")
	if !ok {
		return ExitUsage
	}
	resp, code := c.call(ctx, http.MethodGet, nil, nil, "v1", "spaces", pos[0], "audiences", pos[1], "connections")
	if resp == nil {
		return code
	}
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

func (c *configCmd) history(ctx context.Context, args []string) int {
	pos, ok := c.parse(args, "SPACE", "AUDIENCE", "DESTINATION")
	if !ok {
		return ExitUsage
	}
	resp, code := c.call(ctx, http.MethodGet, nil, nil, append(connectionPath(pos...), "history")...)
	if resp == nil {
		return code
	}
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

func (c *configCmd) types(ctx context.Context, args []string) int {
	if _, ok := c.parse(args); !ok {
		return ExitUsage
	}
	resp, code := c.call(ctx, http.MethodGet, nil, nil, "v1", "destination-types")
	if resp == nil {
		return code
	}
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

func (c *configCmd) preview(ctx context.Context, args []string) int {
	file := c.fs.String("f", "", "preview request (destination_id, connection, event), JSON or YAML (- for standard input)")
	connFile := c.fs.String("connection", "", "connection configuration file, JSON or YAML")
	eventFile := c.fs.String("event", "", "input event file, JSON or YAML")
	dest := c.fs.String("destination", "", "destination id (default preview)")
	if _, ok := c.parse(args); !ok {
		return ExitUsage
	}
	var body []byte
	switch {
	case *file != "" && (*connFile != "" || *eventFile != "" || *dest != ""):
		c.usagef("-f excludes --connection, --event and --destination")
		return ExitUsage
	case *file != "":
		b, err := c.readJSON(*file)
		if err != nil {
			c.usagef("%v", err)
			return ExitUsage
		}
		body = b
	case *connFile != "" && *eventFile != "":
		conn, err := c.readJSON(*connFile)
		if err != nil {
			c.usagef("%v", err)
			return ExitUsage
		}
		ev, err := c.readJSON(*eventFile)
		if err != nil {
			c.usagef("%v", err)
			return ExitUsage
		}
		req := map[string]any{"connection": json.RawMessage(conn), "event": json.RawMessage(ev)}
		if *dest != "" {
			req["destination_id"] = *dest
		}
		body, _ = json.Marshal(req)
	default:
		c.usagef("want -f REQUEST, or --connection FILE and --event FILE")
		return ExitUsage
	}
	resp, code := c.call(ctx, http.MethodPost, body, nil, "v1", "preview")
	if resp == nil {
		return code
	}
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
