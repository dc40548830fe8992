package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/idsync/idsync/config"
)

// Defaults of the admin API client.
const (
	defaultAdminAddr = "http://127.0.0.1:8088"
	// clientTimeout bounds one API call, connection included.
	clientTimeout = 30 * time.Second
	// maxResponseBytes bounds what the client reads of a response.
	maxResponseBytes = 16 << 20
)

// apiClient calls the admin API (docs/admin-api.md).
type apiClient struct {
	base  *url.URL
	token string
	hc    *http.Client
}

// newAPIClient checks addr; an address without a scheme is taken as http.
func newAPIClient(addr, token string) (*apiClient, error) {
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	u, err := url.Parse(addr)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("invalid admin address %q: want http://host:port", addr)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	return &apiClient{base: u, token: token, hc: &http.Client{Timeout: clientTimeout}}, nil
}

// apiResponse is a response the server gave, whatever its status.
type apiResponse struct {
	Status int
	Header http.Header
	Body   []byte
}

// refusal is a response with status 400 or more, decoded from the API's
// error shape.
type refusal struct {
	Status   int
	Message  string
	Problems []struct {
		Field   string `json:"field"`
		Message string `json:"message"`
	}
}

func (r *refusal) Error() string { return r.Message }

// connError means the server could not be reached (or answered nonsense).
type connError struct{ err error }

func (e *connError) Error() string { return e.err.Error() }
func (e *connError) Unwrap() error { return e.err }

// do sends one request to the path made of segments (each escaped here,
// so an id holding "/" stays one segment). It returns a *connError when the
// server cannot be reached and a *refusal for a 4xx or 5xx answer.
func (c *apiClient) do(ctx context.Context, method string, body []byte, header http.Header, segments ...string) (*apiResponse, error) {
	u := *c.base
	raw := u.EscapedPath()
	for _, s := range segments {
		u.Path += "/" + s
		raw += "/" + url.PathEscape(s)
	}
	u.RawPath = raw
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, &connError{fmt.Errorf("building the request: %w", err)}
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, &connError{fmt.Errorf("calling the admin API at %s: %w", c.base.Redacted(), unwrapURLError(err))}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return nil, &connError{fmt.Errorf("reading the admin API's response: %w", err)}
	}
	out := &apiResponse{Status: resp.StatusCode, Header: resp.Header, Body: b}
	if resp.StatusCode >= 400 {
		ref := &refusal{Status: resp.StatusCode}
		var e struct {
			Error    string `json:"error"`
			Problems []struct {
				Field   string `json:"field"`
				Message string `json:"message"`
			} `json:"problems"`
		}
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			ref.Message, ref.Problems = e.Error, e.Problems
		} else {
			ref.Message = strings.TrimSpace(string(b))
			if len(ref.Message) > 200 {
				ref.Message = ref.Message[:200] + "…"
			}
		}
		return out, ref
	}
	return out, nil
}

// unwrapURLError drops *url.Error's repetition of method and URL.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// adminFlags are the flags of every admin API client command: where the
// API is and the token to send.
type adminFlags struct {
	addr, token, tokenFile, caFile string
}

// bind registers --addr, --token and --token-file as persistent flags of
// cmd. Their defaults come from the environment when the command runs (so
// --help never shows a token).
func (f *adminFlags) bind(cmd *cobra.Command) {
	fs := cmd.PersistentFlags()
	fs.StringVar(&f.addr, "addr", "", "admin API address (default $"+config.EnvAdminAddr+", else "+defaultAdminAddr+"; host:port means http)")
	fs.StringVar(&f.token, "token", "", "bearer token (default $"+config.EnvAdminToken+"); prefer --token-file or the environment: a flag shows in ps")
	fs.StringVar(&f.tokenFile, "token-file", "", "file holding the bearer token (default $"+config.EnvAdminTokenFile+")")
	fs.StringVar(&f.caFile, "ca-file", "", "PEM CAs that verify an https admin address (default $"+config.EnvAdminCAFile+", else the system's)")
}

// client returns the API client the flags and the environment describe.
// Flags win over the environment. The token is, in order: --token,
// --token-file, $IDSYNC_ADMIN_TOKEN, $IDSYNC_ADMIN_TOKEN_FILE; giving both
// of one layer is a usage error, and so is a token file that cannot be
// read or is empty. No token at all is allowed (the server answers 401).
func (f *adminFlags) client(env Env) (*apiClient, error) {
	addr := f.addr
	if addr == "" {
		addr = env.Getenv(config.EnvAdminAddr)
	}
	if addr == "" {
		addr = defaultAdminAddr
	}
	token, err := resolveToken(f.token, f.tokenFile, env.Getenv)
	if err != nil {
		return nil, &exitError{code: ExitUsage, err: err}
	}
	api, err := newAPIClient(addr, token)
	if err != nil {
		return nil, &exitError{code: ExitUsage, err: err}
	}
	caFile := f.caFile
	if caFile == "" {
		caFile = env.Getenv(config.EnvAdminCAFile)
	}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		pool := x509.NewCertPool()
		if err == nil && !pool.AppendCertsFromPEM(pem) {
			err = errors.New("no PEM certificate in it")
		}
		if err != nil {
			return nil, &exitError{code: ExitUsage, err: fmt.Errorf("CA file %s: %w", caFile, err)}
		}
		api.hc.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	}
	return api, nil
}

// resolveToken picks the bearer token as adminFlags.client says.
func resolveToken(flagToken, flagFile string, getenv func(string) string) (string, error) {
	switch {
	case flagToken != "" && flagFile != "":
		return "", errors.New("give --token or --token-file, not both")
	case flagToken != "":
		return flagToken, nil
	case flagFile != "":
		return readTokenFile("--token-file", flagFile)
	}
	envToken, envFile := getenv(config.EnvAdminToken), getenv(config.EnvAdminTokenFile)
	switch {
	case envToken != "" && envFile != "":
		return "", fmt.Errorf("set %s or %s, not both", config.EnvAdminToken, config.EnvAdminTokenFile)
	case envToken != "":
		return envToken, nil
	case envFile != "":
		return readTokenFile(config.EnvAdminTokenFile, envFile)
	}
	return "", nil
}

// readTokenFile reads a token file, trimming surrounding white space (a
// trailing newline, mostly). The messages name the file, never its content.
func readTokenFile(from, path string) (string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%s: reading the token: %w", from, err)
	}
	tok := strings.TrimSpace(string(raw))
	switch {
	case tok == "":
		return "", fmt.Errorf("%s: %s is empty", from, path)
	case strings.ContainsAny(tok, " \t\r\n"):
		return "", fmt.Errorf("%s: %s holds more than one line or word", from, path)
	}
	return tok, nil
}

// exitFor returns the exit code of a failed call: ExitRefused for a 4xx
// answer, ExitUnavailable for a 5xx answer or no answer.
func exitFor(err error) int {
	var ref *refusal
	if errors.As(err, &ref) && ref.Status < 500 {
		return ExitRefused
	}
	return ExitUnavailable
}
