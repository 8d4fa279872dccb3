package pgw_test

import (
	"bytes"
	"context"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/rendezvous-core/rendezvous/federation/registry"
	"github.com/rendezvous-core/rendezvous/region/gtpc"
	"github.com/rendezvous-core/rendezvous/region/pgw"
	"github.com/rendezvous-core/rendezvous/region/session"
	"github.com/rendezvous-core/rendezvous/region/session/sessiontest"
	"github.com/rendezvous-core/rendezvous/topology"
	"github.com/wmnsk/go-gtp/gtpv2"
	"github.com/wmnsk/go-gtp/gtpv2/ie"
	"github.com/wmnsk/go-gtp/gtpv2/message"
)

// TestWithRegistryStore runs the PGW on the real *registry.Store (embedded
// SQLite): it is the SubscriberLookup, the AnchorSink (Anchors()) and the
// UsageRecorder, with anchors and usage written asynchronously.
func TestWithRegistryStore(t *testing.T) {
	ctx := context.Background()
	store, err := registry.Open(ctx, registry.Config{DSN: "sqlite:" + filepath.Join(t.TempDir(), "reg.db"),
		KEK: bytes.Repeat([]byte{7}, 32), KEKID: "test", Region: topology.JP})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if err := store.Provision(ctx, registry.Subscriber{IMSI: "901700000000001", MSISDN: "46700000001",
		Status: registry.StatusActive, HomeRegion: topology.JP,
		APNs: []registry.APN{{Name: "internet", PDNType: registry.PDNIPv4, QCI: 9, ARPPriority: 8,
			AMBRUplink: 64000, AMBRDownlink: 128000}}},
		registry.AuthData{Ki: [16]byte{1}, OPc: [16]byte{2}, AMF: [2]byte{0x80}}); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, "10.53.0.0/16") // for its addresses and SGW socket
	usage := &checkedUsage{store: store}
	h.pgw.Close()
	tab, err := session.New(session.Config{NodeID: 1, Node: "jp-1", Region: topology.JP, Tunnels: sessiontest.NewTunnels(),
		Anchors: store.Anchors(), Usage: usage, Logger: quiet(),
		Pools: []session.Pool{{APN: "internet", Prefix: netip.MustParsePrefix("10.53.0.0/16")}}})
	if err != nil {
		t.Fatal(err)
	}
	p, err := pgw.New(pgw.Config{Endpoint: h.ep, Sessions: tab, Subscribers: store, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var _ session.AnchorSink = store.Anchors()
	var _ session.UsageRecorder = store
	var _ pgw.SubscriberLookup = store

	r := h.sgw.roundTrip(h.sgw.csr("901700000000001", "internet", 0x10)).(*message.CreateSessionResponse)
	if c := cause(t, r.Cause); c != gtpv2.CauseRequestAccepted {
		t.Fatalf("cause %d", c)
	}
	if up, _ := r.AMBR.AggregateMaximumBitRateUp(); up != 64 {
		t.Errorf("APN-AMBR up %d kbps, want 64", up)
	}
	r = h.sgw.roundTrip(h.sgw.csr("901700000000002", "internet", 0x20)).(*message.CreateSessionResponse)
	if c := cause(t, r.Cause); c != gtpv2.CauseIMSIIMEINotKnown {
		t.Errorf("unknown IMSI via the store: cause %d, want 96", c)
	}
	teid, _ := (func() (uint32, error) {
		s, ok := tab.ByBearer(session.KindPGW, "901700000000001", 5)
		if !ok {
			t.Fatal("no session")
		}
		return uint32(s.TEID), nil
	})()
	h.sgw.seq++
	b, _ := message.Marshal(message.NewDeleteSessionRequest(teid, h.sgw.seq, ie.NewEPSBearerID(5)))
	if c := cause(t, h.sgw.roundTrip(b).(*message.DeleteSessionResponse).Cause); c != gtpv2.CauseRequestAccepted {
		t.Fatalf("DSR cause %d", c)
	}
	tab.Close() // drains the usage record into the store
	fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := store.Anchors().Flush(fctx); err != nil {
		t.Errorf("anchor flush: %v", err)
	}
	_ = gtpc.Port
	if usage.calls != 1 || usage.err != nil {
		t.Errorf("RecordUsage: %d calls, last error %v", usage.calls, usage.err)
	}
}

// checkedUsage passes usage to the store and keeps the outcome (only the
// table's usage goroutine calls it; read after tab.Close).
type checkedUsage struct {
	store *registry.Store
	calls int
	err   error
}

func (u *checkedUsage) RecordUsage(ctx context.Context, r registry.Usage) error {
	u.calls++
	u.err = u.store.RecordUsage(ctx, r)
	return u.err
}
