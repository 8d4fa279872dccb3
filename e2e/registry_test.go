package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rendezvous-core/rendezvous/federation/consensus"
	"github.com/rendezvous-core/rendezvous/federation/membership"
	"github.com/rendezvous-core/rendezvous/lab"
	"github.com/rendezvous-core/rendezvous/roamsim"
)

// freshPostgres creates a database of its own on the test server
// (RDV_TEST_PG_DSN) and drops it at the end.
func freshPostgres(t *testing.T) string {
	t.Helper()
	dsn := os.Getenv("RDV_TEST_PG_DSN")
	if dsn == "" {
		if os.Getenv("RDV_REQUIRE_ALL") == "1" {
			t.Fatal("RDV_TEST_PG_DSN is not set and RDV_REQUIRE_ALL=1 forbids skipping")
		}
		t.Skip("RDV_TEST_PG_DSN is not set: no PostgreSQL server")
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect %s: %v", dsn, err)
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "rdv_e2e_" + hex.EncodeToString(b)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
		conn.Close(context.Background())
	})
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
}

// TestRegistryOutageCachedSubscribersAttach: with the shared PostgreSQL
// registry cut off, subscribers the nodes have cached keep attaching (AIR
// from the reserved SQN block, ULR from the cached profile).
func TestRegistryOutageCachedSubscribersAttach(t *testing.T) {
	requireRoot(t)
	dsn := freshPostgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	l, err := lab.Start(ctx, lab.Config{
		StateDir:      t.TempDir(),
		RegistryDSN:   dsn,
		Subscribers:   12,
		GossipProfile: membership.TestProfile(),
		RaftTiming:    consensus.TestTiming(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	if _, err := l.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	attach := func(what string) roamsim.Report {
		t.Helper()
		d, err := l.StartDevices(ctx, lab.DevicesConfig{Mode: roamsim.OneShot, AttachRate: -1})
		if err != nil {
			t.Fatal(err)
		}
		<-d.Done()
		rep, err := d.Stop()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return rep
	}
	first := attach("with the registry up")
	if first.Totals.EverOK != first.Totals.Devices || first.Totals.Devices == 0 {
		t.Fatalf("with the registry up: %d of %d attached: %+v", first.Totals.EverOK, first.Totals.Devices, first.Totals.Causes)
	}
	if err := l.SetRegistryDown(true); err != nil {
		t.Fatal(err)
	}
	second := attach("with the registry down")
	if err := l.SetRegistryDown(false); err != nil {
		t.Fatal(err)
	}
	if second.Totals.EverOK != second.Totals.Devices {
		t.Fatalf("registry down: %d of %d cached subscribers attached; failures: %+v", second.Totals.EverOK, second.Totals.Devices, second.Totals.Causes)
	}
	degraded := false
	for _, n := range l.Nodes() {
		if r := n.Registry(); r != nil && r.Degraded() {
			degraded = true
		}
	}
	_ = degraded // informational: the nodes may already have reconnected
}
