package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Defaults of the admin API client.
const (
	defaultAdminAddr = "http://127.0.0.1:8088"
	envAdminAddr     = "IDSYNC_ADMIN_ADDR"
	envAdminToken    = "IDSYNC_ADMIN_TOKEN"
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
