package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/rendezvous-core/rendezvous/region/opapi"
	"github.com/rendezvous-core/rendezvous/topology"
)

// backend is a minimal routing table behind a real operator API server:
// rdvctl (flags, discovery, output) is the thing under test.
type backend struct {
	mu    sync.Mutex
	state map[topology.RegionID]string
	epoch uint64
}

func (b *backend) Status(context.Context) (opapi.Status, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := opapi.Status{Node: "jp-1", Region: topology.JP, Leader: "jp-1", Epoch: b.epoch,
		Members: []opapi.Member{{Name: "jp-1", Region: topology.JP, Role: "core", State: "alive", Addr: "127.0.1.1:7946"}},
		RTT:     map[topology.RegionID]map[topology.RegionID]float64{"JP": {"JP": 0, "US": 120}, "US": {"JP": 120, "US": 0}}}
	for _, r := range []topology.RegionID{"JP", "US", "DE", "AU"} {
		st.Table = append(st.Table, opapi.Route{Region: r, State: b.state[r], Epoch: b.epoch})
	}
	return st, nil
}

func (b *backend) Act(_ context.Context, r topology.RegionID, a opapi.Action) (opapi.ActionResult, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.state[r]; !ok {
		return opapi.ActionResult{}, fmt.Errorf("%s: %w", r, opapi.ErrUnknownRegion)
	}
	b.epoch++
	b.state[r] = map[opapi.Action]string{opapi.Drain: "draining", opapi.Failover: "failed", opapi.Restore: "active", opapi.Rebalance: "active"}[a]
	return opapi.ActionResult{Region: r, Action: a, Epoch: b.epoch, State: b.state[r]}, nil
}

func startAPI(t *testing.T) (string, *backend) {
	t.Helper()
	b := &backend{state: map[topology.RegionID]string{"JP": "active", "US": "active", "DE": "active", "AU": "active"}}
	s, err := opapi.NewServer(opapi.ServerConfig{Listen: netip.MustParseAddrPort("127.0.0.1:0"), Token: "tok", Backend: b})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s.Addr().String(), b
}

func rdvctl(t *testing.T, env map[string]string, args ...string) (string, string, int) {
	t.Helper()
	root := newRootCmd(func(k string) string { return env[k] })
	var out, errb bytes.Buffer
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&errb)
	code := 0
	if err := root.Execute(); err != nil {
		fmt.Fprintln(&errb, "rdvctl:", err)
		code = 1
		var ue usageError
		if ok := asUsage(err, &ue); ok {
			code = exitUsage
		}
	}
	return out.String(), errb.String(), code
}

func asUsage(err error, ue *usageError) bool {
	for err != nil {
		if u, ok := err.(usageError); ok {
			*ue = u
			return true
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		err = u.Unwrap()
	}
	return false
}

func TestStatusAndActionsWithFlags(t *testing.T) {
	addr, b := startAPI(t)
	out, errs, code := rdvctl(t, nil, "--api", addr, "--token", "tok", "status", "-o", "json")
	if code != 0 {
		t.Fatalf("status: exit %d: %s", code, errs)
	}
	var st opapi.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil || st.Node != "jp-1" || len(st.Table) != 4 {
		t.Fatalf("status json = %q (%v)", out, err)
	}
	out, errs, code = rdvctl(t, nil, "--api", addr, "--token", "tok", "region", "drain", "de")
	if code != 0 || !strings.Contains(out, "drain DE: now draining") {
		t.Fatalf("drain: exit %d out %q err %q", code, out, errs)
	}
	if b.state["DE"] != "draining" {
		t.Fatalf("DE = %q after drain", b.state["DE"])
	}
	out, _, code = rdvctl(t, nil, "--api", addr, "--token", "tok", "status")
	if code != 0 || !strings.Contains(out, "DE      draining") || !strings.Contains(out, "RTT ms") {
		t.Fatalf("status table:\n%s", out)
	}
}

func TestDiscovery(t *testing.T) {
	addr, _ := startAPI(t)
	// From the environment.
	if _, errs, code := rdvctl(t, map[string]string{"RDV_API": addr, "RDV_TOKEN": "tok"}, "status"); code != 0 {
		t.Fatalf("env: exit %d: %s", code, errs)
	}
	// From the running lab's file.
	state := t.TempDir()
	dir := filepath.Join(state, "rendezvous")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	lf, _ := json.Marshal(opapi.LabFile{API: "http://" + addr, Token: "tok"})
	if err := os.WriteFile(filepath.Join(dir, "lab.json"), lf, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, errs, code := rdvctl(t, map[string]string{"XDG_STATE_HOME": state}, "status"); code != 0 {
		t.Fatalf("lab file: exit %d: %s", code, errs)
	}
	// Wrong token is an error, not a usage error.
	if _, _, code := rdvctl(t, map[string]string{"RDV_API": addr, "RDV_TOKEN": "nope"}, "status"); code != 1 {
		t.Fatalf("wrong token: exit %d, want 1", code)
	}
	// Nothing to go on: usage error naming what is missing.
	_, errs, code := rdvctl(t, map[string]string{"HOME": t.TempDir()}, "status")
	if code != exitUsage || !strings.Contains(errs, "RDV_API") {
		t.Fatalf("no API: exit %d err %q", code, errs)
	}
}

func TestUsageErrors(t *testing.T) {
	addr, _ := startAPI(t)
	for _, args := range [][]string{
		{"--api", addr, "--token", "tok", "region", "drain", "XX"},
		{"--api", addr, "--token", "tok", "region", "drain"},
		{"--api", addr, "--token", "tok", "status", "-o", "yaml"},
		{"--bogus"},
	} {
		if _, _, code := rdvctl(t, nil, args...); code != exitUsage {
			t.Errorf("%v: exit %d, want %d", args, code, exitUsage)
		}
	}
}
