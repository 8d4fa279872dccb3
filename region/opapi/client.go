package opapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/rendezvous-core/rendezvous/topology"
)

// Client talks to a node's operator API.
type Client struct {
	// Base is the API's base URL, e.g. "http://127.0.1.1:8080".
	Base string
	// Token is the bearer token.
	Token string
	// HTTP is the client used; nil means http.DefaultClient's settings
	// without a timeout of its own: the caller's context bounds each call.
	HTTP *http.Client
}

// APIError is a non-2xx answer from the API.
type APIError struct {
	Code   int
	Body   Error
	Method string
	URL    string
}

func (e *APIError) Error() string {
	msg := fmt.Sprintf("%s %s: %d %s: %s", e.Method, e.URL, e.Code, http.StatusText(e.Code), e.Body.Error)
	if e.Body.Leader != "" {
		msg += " (leader: " + e.Body.Leader + ")"
	}
	return msg
}

// Status fetches GET /v1/status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var st Status
	err := c.do(ctx, http.MethodGet, "/v1/status", &st)
	return st, err
}

// Act performs an operator action on a region.
func (c *Client) Act(ctx context.Context, region topology.RegionID, a Action) (ActionResult, error) {
	var res ActionResult
	err := c.do(ctx, http.MethodPost, "/v1/regions/"+string(region)+"/"+string(a), &res)
	return res, err
}

// Drill asks a running lab's control API to run a drill and waits for its
// report (raw JSON: the lab's DrillReport).
func (c *Client) Drill(ctx context.Context, spec string) (json.RawMessage, error) {
	var out json.RawMessage
	body, _ := json.Marshal(DrillRequest{Spec: spec})
	err := c.doBody(ctx, http.MethodPost, "/v1/drill", body, &out)
	return out, err
}

func (c *Client) do(ctx context.Context, method, path string, out any) error {
	return c.doBody(ctx, method, path, nil, out)
}

func (c *Client) doBody(ctx context.Context, method, path string, body []byte, out any) error {
	url := strings.TrimRight(c.Base, "/") + path
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return fmt.Errorf("opapi: %s %s: %w", method, url, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("opapi: %s %s: %w", method, url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return fmt.Errorf("opapi: %s %s: read body: %w", method, url, err)
	}
	if resp.StatusCode/100 != 2 {
		e := &APIError{Code: resp.StatusCode, Method: method, URL: url}
		if json.Unmarshal(data, &e.Body) != nil {
			e.Body.Error = strings.TrimSpace(string(data))
		}
		return e
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("opapi: %s %s: decode answer: %w", method, url, err)
	}
	return nil
}
