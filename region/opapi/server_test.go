package opapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/rendezvous-core/rendezvous/topology"
)

// tableBackend is a small routing table standing in for the raft-backed node:
// the API is the thing under test here.
type tableBackend struct {
	mu     sync.Mutex
	leader bool
	table  map[topology.RegionID]string
	epoch  uint64
}

func (b *tableBackend) Status(context.Context) (Status, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := Status{Node: "jp-1", Region: topology.JP, Leader: "us-1", Epoch: b.epoch}
	for _, r := range []topology.RegionID{topology.JP, topology.US, topology.DE, topology.AU} {
		st.Table = append(st.Table, Route{Region: r, State: b.table[r], Epoch: b.epoch})
	}
	return st, nil
}

func (b *tableBackend) Act(_ context.Context, r topology.RegionID, a Action) (ActionResult, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.table[r]; !ok {
		return ActionResult{}, fmt.Errorf("region %q: %w", r, ErrUnknownRegion)
	}
	if !b.leader {
		return ActionResult{}, fmt.Errorf("drain %s: %w", r, ErrNotLeader)
	}
	states := map[Action]string{Drain: "draining", Failover: "failed", Restore: "active", Rebalance: "active"}
	b.epoch++
	b.table[r] = states[a]
	return ActionResult{Region: r, Action: a, Epoch: b.epoch, State: b.table[r]}, nil
}

func startServer(t *testing.T, b Backend) *Client {
	t.Helper()
	s, err := NewServer(ServerConfig{Listen: netip.MustParseAddrPort("127.0.0.1:0"), Token: "s3cret", Backend: b})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		if err := s.Close(); err != nil {
			t.Errorf("second close: %v", err)
		}
	})
	return &Client{Base: "http://" + s.Addr().String(), Token: "s3cret"}
}

func TestAPI(t *testing.T) {
	b := &tableBackend{leader: true, table: map[topology.RegionID]string{"JP": "active", "US": "active", "DE": "active", "AU": "active"}}
	c := startServer(t, b)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	st, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Node != "jp-1" || st.Leader != "us-1" || len(st.Table) != 4 {
		t.Fatalf("status = %+v", st)
	}

	res, err := c.Act(ctx, topology.DE, Drain)
	if err != nil {
		t.Fatal(err)
	}
	if res.State != "draining" || res.Epoch != 1 {
		t.Fatalf("drain DE = %+v", res)
	}
	st, _ = c.Status(ctx)
	if st.Table[2].Region != topology.DE || st.Table[2].State != "draining" {
		t.Fatalf("table after drain = %+v", st.Table)
	}

	var apiErr *APIError
	_, err = c.Act(ctx, "XX", Restore)
	if !errors.As(err, &apiErr) || apiErr.Code != http.StatusNotFound {
		t.Fatalf("unknown region: err = %v, want 404", err)
	}
	_, err = c.Act(ctx, topology.DE, "explode")
	if !errors.As(err, &apiErr) || apiErr.Code != http.StatusNotFound {
		t.Fatalf("unknown action: err = %v, want 404", err)
	}

	b.mu.Lock()
	b.leader = false
	b.mu.Unlock()
	_, err = c.Act(ctx, topology.DE, Restore)
	if !errors.As(err, &apiErr) || apiErr.Code != http.StatusConflict || apiErr.Body.Leader != "us-1" {
		t.Fatalf("not leader: err = %v, want 409 naming the leader", err)
	}
}

func TestAPIRequiresToken(t *testing.T) {
	b := &tableBackend{table: map[topology.RegionID]string{"JP": "active"}}
	c := startServer(t, b)
	for _, tok := range []string{"", "wrong", "S3CRET", "s3cret2"} {
		bad := &Client{Base: c.Base, Token: tok}
		_, err := bad.Status(context.Background())
		var apiErr *APIError
		if !errors.As(err, &apiErr) || apiErr.Code != http.StatusUnauthorized {
			t.Errorf("token %q: err = %v, want 401", tok, err)
		}
		_, err = bad.Act(context.Background(), topology.JP, Failover)
		if !errors.As(err, &apiErr) || apiErr.Code != http.StatusUnauthorized {
			t.Errorf("token %q: act err = %v, want 401", tok, err)
		}
	}
	if b.table["JP"] != "active" {
		t.Fatalf("an unauthenticated action changed the table: %v", b.table)
	}
}

func TestServerConfigErrors(t *testing.T) {
	if _, err := NewServer(ServerConfig{Listen: netip.MustParseAddrPort("127.0.0.1:0"), Backend: &tableBackend{}}); err == nil {
		t.Error("no token: want an error")
	}
	if _, err := NewServer(ServerConfig{Listen: netip.MustParseAddrPort("127.0.0.1:0"), Token: "x"}); err == nil {
		t.Error("no backend: want an error")
	}
}
