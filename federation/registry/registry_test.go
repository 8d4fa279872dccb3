package registry

import (
	"context"
	"errors"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/rendezvous-core/rendezvous/topology"
)

func TestProvisionReadUpdateDelete(t *testing.T) {
	eachBackend(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		s := openStore(t, testConfig(dsn))
		sub, auth := testSubscriber(1, topology.DE)
		if err := s.Provision(ctx, sub, auth); err != nil {
			t.Fatalf("Provision: %v", err)
		}
		if err := s.Provision(ctx, sub, auth); !errors.Is(err, ErrConflict) {
			t.Fatalf("Provision twice: %v, want ErrConflict", err)
		}
		other, oauth := testSubscriber(2, topology.JP)
		other.MSISDN = sub.MSISDN
		if err := s.Provision(ctx, other, oauth); !errors.Is(err, ErrConflict) {
			t.Fatalf("Provision with a taken MSISDN: %v, want ErrConflict", err)
		}
		got, err := s.Subscriber(ctx, sub.IMSI)
		if err != nil {
			t.Fatalf("Subscriber: %v", err)
		}
		if got.Revision <= 0 || got.Status != StatusActive {
			t.Fatalf("revision %d status %q", got.Revision, got.Status)
		}
		want := sub
		want.Status, want.Revision = StatusActive, got.Revision
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("Subscriber:\n got %+v\nwant %+v", got, want)
		}
		a, err := s.AuthData(ctx, sub.IMSI)
		if err != nil || a.Ki != auth.Ki || a.OPc != auth.OPc || a.AMF != auth.AMF {
			t.Fatalf("AuthData: keys differ (err %v)", err)
		}
		if ls, la, err := s.Lookup(ctx, sub.IMSI); err != nil || la != a || !reflect.DeepEqual(ls, got) {
			t.Fatalf("Lookup differs from Subscriber+AuthData (err %v)", err)
		}

		upd := got
		upd.APNs = append(upd.APNs, APN{Name: "iot"})
		upd.Policy.Pin = topology.US
		if err := s.Update(ctx, upd); err != nil {
			t.Fatalf("Update: %v", err)
		}
		if err := s.Update(ctx, upd); !errors.Is(err, ErrConflict) {
			t.Fatalf("Update with a stale revision: %v, want ErrConflict", err)
		}
		got2, err := s.Subscriber(ctx, sub.IMSI)
		if err != nil {
			t.Fatal(err)
		}
		if got2.Revision != got.Revision+1 || len(got2.APNs) != 2 || got2.APNs[1].PDNType != PDNIPv4v6 || got2.Policy.Pin != topology.US {
			t.Fatalf("after Update: %+v", got2)
		}
		if err := s.Suspend(ctx, sub.IMSI); err != nil {
			t.Fatal(err)
		}
		if got3, _ := s.Subscriber(ctx, sub.IMSI); got3.Status != StatusSuspended || got3.Revision != got2.Revision+1 {
			t.Fatalf("after Suspend: %+v", got3)
		}
		newAuth := auth
		newAuth.Ki[0] ^= 0xff
		if err := s.SetAuthData(ctx, sub.IMSI, newAuth); err != nil {
			t.Fatal(err)
		}
		if a, _ := s.AuthData(ctx, sub.IMSI); a.Ki != newAuth.Ki {
			t.Fatal("SetAuthData: Ki not replaced")
		}
		if err := s.Delete(ctx, sub.IMSI); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Subscriber(ctx, sub.IMSI); !errors.Is(err, ErrNotFound) {
			t.Fatalf("after Delete: %v, want ErrNotFound", err)
		}
		for name, err := range map[string]error{
			"Delete":       s.Delete(ctx, sub.IMSI),
			"Suspend":      s.Suspend(ctx, sub.IMSI),
			"Update":       s.Update(ctx, upd),
			"SetAuthData":  s.SetAuthData(ctx, sub.IMSI, auth),
			"Provision ok": nil,
		} {
			if name != "Provision ok" && !errors.Is(err, ErrNotFound) {
				t.Errorf("%s of a deleted subscriber: %v, want ErrNotFound", name, err)
			}
		}
		if err := s.Provision(ctx, sub, auth); err != nil {
			t.Fatalf("re-Provision after Delete: %v", err)
		}
	})
}

func TestProvisionRejectsInvalid(t *testing.T) {
	s := openStore(t, testConfig("sqlite:"+t.TempDir()+"/r.db"))
	ctx := context.Background()
	good, auth := testSubscriber(1, topology.JP)
	for name, mut := range map[string]func(*Subscriber, *AuthData){
		"short IMSI":    func(s *Subscriber, _ *AuthData) { s.IMSI = "12345" },
		"letter IMSI":   func(s *Subscriber, _ *AuthData) { s.IMSI = "00101000000000x" },
		"unknown home":  func(s *Subscriber, _ *AuthData) { s.HomeRegion = "FR" },
		"bad MSISDN":    func(s *Subscriber, _ *AuthData) { s.MSISDN = "+81" },
		"bad status":    func(s *Subscriber, _ *AuthData) { s.Status = "gone" },
		"empty APN":     func(s *Subscriber, _ *AuthData) { s.APNs = []APN{{}} },
		"bad PDN type":  func(s *Subscriber, _ *AuthData) { s.APNs[0].PDNType = "x25" },
		"unknown pin":   func(s *Subscriber, _ *AuthData) { s.Policy.Pin = "FR" },
		"unknown RAT":   func(s *Subscriber, _ *AuthData) { s.Policy.BarredRATs = []RAT{"5G"} },
		"zero Ki":       func(_ *Subscriber, a *AuthData) { a.Ki = [16]byte{} },
		"zero OPc":      func(_ *Subscriber, a *AuthData) { a.OPc = [16]byte{} },
		"MSISDN 16 dig": func(s *Subscriber, _ *AuthData) { s.MSISDN = "1234567890123456" },
	} {
		sub, a := good, auth
		sub.APNs = append([]APN(nil), good.APNs...)
		mut(&sub, &a)
		if err := s.Provision(ctx, sub, a); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	base := testConfig("sqlite:/tmp/x.db")
	for name, mut := range map[string]func(*Config){
		"no DSN":         func(c *Config) { c.DSN = "" },
		"mysql DSN":      func(c *Config) { c.DSN = "mysql://x" },
		"no KEK":         func(c *Config) { c.KEK = nil },
		"both KEKs":      func(c *Config) { c.KEKFile = "/etc/kek" },
		"short KEK":      func(c *Config) { c.KEK = c.KEK[:16] },
		"bad KEK id":     func(c *Config) { c.KEKID = "a b" },
		"no region":      func(c *Config) { c.Region = "" },
		"overlap IND":    func(c *Config) { c.INDSlices = map[topology.RegionID][2]uint8{"JP": {0, 8}, "US": {8, 15}} },
		"IND over 31":    func(c *Config) { c.INDSlices = map[topology.RegionID][2]uint8{"JP": {0, 32}} },
		"IND reversed":   func(c *Config) { c.INDSlices = map[topology.RegionID][2]uint8{"JP": {7, 0}} },
		"SQNBlock big":   func(c *Config) { c.SQNBlock = 1 << 20 },
		"neg flush":      func(c *Config) { c.AnchorFlush = -1 },
		"empty CRDB reg": func(c *Config) { c.CRDBRegions = map[topology.RegionID]string{"JP": ""} },
	} {
		c := base
		mut(&c)
		if _, err := c.validate(); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	c, err := base.validate()
	if err != nil {
		t.Fatal(err)
	}
	if c.SQNBlock != 32 || c.CacheTTL != 30*time.Second || c.INDSlices[topology.AU] != [2]uint8{24, 31} || c.Logger == nil {
		t.Fatalf("defaults not filled: %+v", c)
	}
}

func TestMigrationsIdempotent(t *testing.T) {
	eachBackend(t, func(t *testing.T, dsn string) {
		a := openStore(t, testConfig(dsn))
		b := openStore(t, testConfig(dsn)) // a second node on the same database
		var n int
		if err := a.r.QueryRow(`SELECT count(*) FROM schema_migrations`).Scan(&n); err != nil || n != 1 {
			t.Fatalf("schema_migrations rows = %d (%v), want 1", n, err)
		}
		if err := b.r.QueryRow(`SELECT count(*) FROM regions`).Scan(&n); err != nil || n != 4 {
			t.Fatalf("regions rows = %d (%v), want 4", n, err)
		}
		if a.Dialect() == "cockroachdb" {
			t.Fatal("dialect detected as cockroachdb")
		}
	})
}

func TestCacheTTLInvalidationAndDegraded(t *testing.T) {
	eachBackend(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		clock := newFakeClock()
		var f faults
		cfgA := testConfig(dsn)
		cfgA.Clock, cfgA.CacheTTL, cfgA.SQNBlock = clock.Now, 30*time.Second, 4
		cfgA.wrapConnector = f.wrap
		a := openStore(t, cfgA)
		b := openStore(t, testConfig(dsn)) // another node
		sub, auth := testSubscriber(7, topology.US)
		if err := b.Provision(ctx, sub, auth); err != nil {
			t.Fatal(err)
		}
		other, oauth := testSubscriber(8, topology.US)
		if err := b.Provision(ctx, other, oauth); err != nil {
			t.Fatal(err)
		}

		v1, err := a.Subscriber(ctx, sub.IMSI)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.Subscriber(ctx, sub.IMSI); err != nil {
			t.Fatal(err)
		}
		if h, m := counter(t, a.m.cacheHits), counter(t, a.m.cacheMisses); h != 1 || m != 1 {
			t.Fatalf("hits %v misses %v, want 1 1", h, m)
		}

		// Node b changes the subscriber: a serves its cached copy (bounded
		// staleness) until the federation's invalidation arrives.
		v1.MSISDN = "819099999999"
		if err := b.Update(ctx, v1); err != nil {
			t.Fatal(err)
		}
		if got, _ := a.Subscriber(ctx, sub.IMSI); got.MSISDN != sub.MSISDN {
			t.Fatalf("cached read saw %q before invalidation", got.MSISDN)
		}
		a.Invalidate(sub.IMSI, v1.Revision) // an old revision: no effect
		if got, _ := a.Subscriber(ctx, sub.IMSI); got.MSISDN != sub.MSISDN {
			t.Fatal("invalidation with an old revision dropped the entry")
		}
		a.Invalidate(sub.IMSI, v1.Revision+1)
		v2, err := a.Subscriber(ctx, sub.IMSI)
		if err != nil || v2.MSISDN != "819099999999" || v2.Revision != v1.Revision+1 {
			t.Fatalf("after invalidation: %+v %v", v2, err)
		}

		// TTL: another change without invalidation shows after the TTL.
		v2.Status = StatusSuspended
		if err := b.Update(ctx, v2); err != nil {
			t.Fatal(err)
		}
		clock.Advance(29 * time.Second)
		if got, _ := a.Subscriber(ctx, sub.IMSI); got.Status != StatusActive {
			t.Fatal("entry refreshed before its TTL")
		}
		clock.Advance(2 * time.Second)
		if got, _ := a.Subscriber(ctx, sub.IMSI); got.Status != StatusSuspended {
			t.Fatal("entry not refreshed after its TTL")
		}
		// Reserve an SQN block of 4 while the database is up.
		first, err := a.NextSQNs(ctx, sub.IMSI, topology.JP, 1)
		if err != nil {
			t.Fatal(err)
		}

		// The database becomes unreachable.
		f.down.Store(true)
		clock.Advance(time.Hour) // every entry expired
		got, err := a.Subscriber(ctx, sub.IMSI)
		if err != nil || got.Status != StatusSuspended {
			t.Fatalf("degraded read of a cached subscriber: %+v %v", got, err)
		}
		if !a.Degraded() {
			t.Fatal("Degraded() = false with the database down")
		}
		if _, err := a.AuthData(ctx, sub.IMSI); err != nil {
			t.Fatalf("degraded AuthData: %v", err)
		}
		if _, err := a.Subscriber(ctx, other.IMSI); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("degraded read of an uncached subscriber: %v, want ErrUnavailable", err)
		}
		if counter(t, a.m.cacheStale) < 2 {
			t.Fatal("stale serves not counted")
		}
		// SQNs continue from the reserved block (3 left), then stop.
		more, err := a.NextSQNs(ctx, sub.IMSI, topology.JP, 3)
		if err != nil {
			t.Fatalf("NextSQNs from the block while degraded: %v", err)
		}
		if more[0] <= first[0] {
			t.Fatalf("SQN went backwards: %d then %d", first[0], more[0])
		}
		if _, err := a.NextSQNs(ctx, sub.IMSI, topology.JP, 1); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("NextSQNs with the block spent and the database down: %v, want ErrUnavailable", err)
		}
		if _, err := a.UpdateServing(ctx, Serving{IMSI: sub.IMSI, Region: topology.JP, MMEHost: "m"}); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("UpdateServing while down: %v, want ErrUnavailable", err)
		}

		// Back up.
		f.down.Store(false)
		if err := a.Ping(ctx); err != nil {
			t.Fatal(err)
		}
		if a.Degraded() {
			t.Fatal("still degraded after a successful ping")
		}
		if _, err := a.Subscriber(ctx, other.IMSI); err != nil {
			t.Fatal(err)
		}
		after, err := a.NextSQNs(ctx, sub.IMSI, topology.JP, 1)
		if err != nil || after[0] <= more[2] {
			t.Fatalf("NextSQNs after recovery: %v %v (last %d)", after, err, more[2])
		}
	})
}

func TestRetryOnSerializationFailure(t *testing.T) {
	eachBackend(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		var f faults
		cfg := testConfig(dsn)
		cfg.wrapConnector = f.wrap
		s := openStore(t, cfg)
		sub, auth := testSubscriber(3, topology.AU)
		f.failCommits.Store(3) // the first three commits fail with 40001
		if err := s.Provision(ctx, sub, auth); err != nil {
			t.Fatalf("Provision with 3 injected 40001s: %v", err)
		}
		if r := counter(t, s.m.txRetries); r != 3 {
			t.Fatalf("retries = %v, want 3", r)
		}
		if _, err := s.Subscriber(ctx, sub.IMSI); err != nil {
			t.Fatal(err)
		}
		// A subscriber never committed twice: the retried Provision saw no
		// conflict with itself.
		var n int
		if err := s.r.QueryRow(`SELECT count(*) FROM subscribers`).Scan(&n); err != nil || n != 1 {
			t.Fatalf("subscribers = %d (%v)", n, err)
		}
		// Retries are bounded.
		cfg2 := testConfig(dsn)
		cfg2.MaxRetries = 2
		var f2 faults
		cfg2.wrapConnector = f2.wrap
		s2 := openStore(t, cfg2)
		f2.failCommits.Store(100)
		err := s2.Suspend(ctx, sub.IMSI)
		if err == nil || sqlState(err) != pgSerializationFailure {
			t.Fatalf("Suspend with endless 40001s: %v", err)
		}
		f2.failCommits.Store(0)
	})
}

func TestSQNBasics(t *testing.T) {
	eachBackend(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		cfg := testConfig(dsn)
		cfg.SQNBlock = 5
		s := openStore(t, cfg)
		sub, auth := testSubscriber(4, topology.JP)
		if err := s.Provision(ctx, sub, auth); err != nil {
			t.Fatal(err)
		}
		got, err := s.NextSQNs(ctx, sub.IMSI, topology.DE, 12)
		if err != nil {
			t.Fatal(err)
		}
		for i, q := range got {
			seq, ind := q>>5, q&31
			if seq != uint64(i+1) || ind != 16+seq%8 {
				t.Fatalf("SQN %d = SEQ %d IND %d; want SEQ %d IND %d", i, seq, ind, i+1, 16+(i+1)%8)
			}
		}
		// Resync to a SEQ_MS far ahead (TS 33.102 C.3.4): next SEQ exceeds it.
		sqnMS := uint64(1000)<<5 | 17
		if err := s.Resync(ctx, sub.IMSI, topology.DE, sqnMS); err != nil {
			t.Fatal(err)
		}
		next, err := s.NextSQNs(ctx, sub.IMSI, topology.DE, 1)
		if err != nil || next[0]>>5 != 1001 {
			t.Fatalf("after resync to SEQ 1000: %v %v", next, err)
		}
		// Resync never lowers the counter.
		if err := s.Resync(ctx, sub.IMSI, topology.DE, 3<<5); err != nil {
			t.Fatal(err)
		}
		next2, _ := s.NextSQNs(ctx, sub.IMSI, topology.DE, 1)
		if next2[0] <= next[0] {
			t.Fatalf("SQN went backwards after a low resync: %d then %d", next[0], next2[0])
		}
		// Only the DE row exists: no write to another region's counter.
		var regions []string
		rows, err := s.r.Query(`SELECT region FROM sqn WHERE imsi = $1`, string(sub.IMSI))
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var r string
			_ = rows.Scan(&r)
			regions = append(regions, r)
		}
		rows.Close()
		if !reflect.DeepEqual(regions, []string{"DE"}) {
			t.Fatalf("sqn rows for regions %v, want [DE]", regions)
		}
		if _, err := s.NextSQNs(ctx, "001019999999999", topology.JP, 1); !errors.Is(err, ErrNotFound) {
			t.Fatalf("NextSQNs of an unknown IMSI: %v", err)
		}
		for _, n := range []int{0, -1, MaxSQNs + 1} {
			if _, err := s.NextSQNs(ctx, sub.IMSI, topology.JP, n); !errors.Is(err, ErrInvalid) {
				t.Fatalf("NextSQNs n=%d: %v", n, err)
			}
		}
		if _, err := s.NextSQNs(ctx, sub.IMSI, "FR", 1); !errors.Is(err, ErrInvalid) {
			t.Fatalf("NextSQNs in an unknown region: %v", err)
		}
	})
}

func TestServingBasics(t *testing.T) {
	eachBackend(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		clock := newFakeClock()
		cfg := testConfig(dsn)
		cfg.Clock = clock.Now
		s := openStore(t, cfg)
		sub, auth := testSubscriber(5, topology.DE)
		if err := s.Provision(ctx, sub, auth); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Serving(ctx, sub.IMSI); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Serving before any ULR: %v", err)
		}
		first := Serving{IMSI: sub.IMSI, MMEHost: "mme1.epc.mnc010.mcc262.3gppnetwork.org", MMERealm: "epc.mnc010.mcc262.3gppnetwork.org",
			VisitedPLMN: topology.PLMN{MCC: "262", MNC: "01"}, Region: topology.DE}
		prev, err := s.UpdateServing(ctx, first)
		if err != nil || prev != (Serving{}) {
			t.Fatalf("first UpdateServing: %+v %v", prev, err)
		}
		if _, err := s.UpdateServing(ctx, first); !errors.Is(err, ErrConflict) {
			t.Fatalf("second insert with generation 0: %v, want ErrConflict", err)
		}
		cur, err := s.Serving(ctx, sub.IMSI)
		if err != nil || cur.Generation != 1 || cur.MMEHost != first.MMEHost || cur.VisitedPLMN != first.VisitedPLMN || !cur.Updated.Equal(clock.Now()) {
			t.Fatalf("Serving: %+v %v", cur, err)
		}
		second := Serving{IMSI: sub.IMSI, MMEHost: "mme7.epc.mnc260.mcc310.3gppnetwork.org", MMERealm: "epc.mnc260.mcc310.3gppnetwork.org",
			VisitedPLMN: topology.PLMN{MCC: "310", MNC: "260"}, Region: topology.US, Generation: 1}
		prev, err = s.UpdateServing(ctx, second)
		if err != nil || prev.MMEHost != first.MMEHost || prev.Generation != 1 {
			t.Fatalf("move: prev %+v %v", prev, err)
		}
		if _, err := s.UpdateServing(ctx, second); !errors.Is(err, ErrConflict) {
			t.Fatalf("stale generation: %v", err)
		}
		if _, err := s.UpdateServing(ctx, Serving{IMSI: "001019999999999", Region: topology.JP}); !errors.Is(err, ErrNotFound) {
			t.Fatalf("UpdateServing of an unknown IMSI: %v", err)
		}
		// Re-homing scan pages through a region's rows.
		for i := 10; i < 25; i++ {
			sb, a := testSubscriber(i, topology.JP)
			if err := s.Provision(ctx, sb, a); err != nil {
				t.Fatal(err)
			}
			if _, err := s.UpdateServing(ctx, Serving{IMSI: sb.IMSI, Region: topology.US, MMEHost: "m"}); err != nil {
				t.Fatal(err)
			}
		}
		var all []topology.IMSI
		after := topology.IMSI("")
		for {
			page, err := s.ServedIn(ctx, topology.US, after, 4)
			if err != nil {
				t.Fatal(err)
			}
			if len(page) == 0 {
				break
			}
			for _, p := range page {
				all = append(all, p.IMSI)
			}
			after = page[len(page)-1].IMSI
		}
		if len(all) != 16 {
			t.Fatalf("ServedIn US found %d rows, want 16", len(all))
		}
		for i := 1; i < len(all); i++ {
			if all[i] <= all[i-1] {
				t.Fatal("ServedIn not in IMSI order")
			}
		}
		if err := s.Delete(ctx, sub.IMSI); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Serving(ctx, sub.IMSI); !errors.Is(err, ErrNotFound) {
			t.Fatalf("serving row survived Delete: %v", err)
		}
	})
}

func TestAnchorsAndUsage(t *testing.T) {
	eachBackend(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		var f faults
		cfg := testConfig(dsn)
		cfg.AnchorQueue, cfg.AnchorBatch, cfg.AnchorFlush = 2, 1, time.Hour
		cfg.wrapConnector = f.wrap
		s := openStore(t, cfg)
		started := time.Date(2026, 11, 29, 1, 2, 3, 0, time.UTC)
		a := SessionAnchor{ID: "n1-00000001", IMSI: "001010000000001", Region: topology.JP, Node: "jp-1", APN: "internet",
			UE: netip.MustParseAddr("10.128.0.7"), LocalTEIDControl: 1, LocalTEIDUser: 2, PeerTEIDControl: 0xfffffff0, PeerTEIDUser: 4, Started: started}
		if !s.Anchors().Enqueue(a) {
			t.Fatal("Enqueue refused on an empty queue")
		}
		if err := s.Anchors().Flush(ctx); err != nil {
			t.Fatal(err)
		}
		a.Ended = started.Add(time.Minute)
		s.Anchors().Enqueue(a)
		if err := s.Anchors().Flush(ctx); err != nil {
			t.Fatal(err)
		}
		var ue string
		var ended, peer int64
		if err := s.r.QueryRow(`SELECT ue, ended_us, teid_c_peer FROM sessions WHERE id = $1`, a.ID).Scan(&ue, &ended, &peer); err != nil {
			t.Fatal(err)
		}
		if ue != "10.128.0.7" || ended != a.Ended.UnixMicro() || peer != 0xfffffff0 {
			t.Fatalf("session row: %s %d %d", ue, ended, peer)
		}
		if s.Anchors().Enqueue(SessionAnchor{ID: "x", Region: "FR"}) {
			t.Fatal("anchor with an unknown region accepted")
		}

		// Database down: the queue stays bounded and drops are counted.
		f.down.Store(true)
		accepted := 0
		for i := 0; i < 20; i++ {
			b := a
			b.ID = "n1-x" + string(rune('a'+i))
			if s.Anchors().Enqueue(b) {
				accepted++
			}
		}
		if accepted > 3 || counter(t, s.m.anchorsDropped) < 17 {
			t.Fatalf("accepted %d anchors into a queue of 2 (+1 in the batch)", accepted)
		}
		f.down.Store(false)
		if err := s.Anchors().Flush(ctx); err != nil {
			t.Fatal(err)
		}

		u := Usage{Session: a.ID, Sequence: 1, BytesUp: 100, BytesDown: 2000, From: started, To: started.Add(time.Minute)}
		for i := 0; i < 2; i++ {
			if err := s.RecordUsage(ctx, u); err != nil {
				t.Fatalf("RecordUsage #%d: %v", i+1, err)
			}
		}
		u2 := u
		u2.BytesDown++
		if err := s.RecordUsage(ctx, u2); !errors.Is(err, ErrConflict) {
			t.Fatalf("different record, same key: %v", err)
		}
		var n int
		if err := s.r.QueryRow(`SELECT count(*) FROM usage`).Scan(&n); err != nil || n != 1 {
			t.Fatalf("usage rows %d %v", n, err)
		}
		if err := s.RecordUsage(ctx, Usage{Session: "s", BytesUp: 1 << 63}); !errors.Is(err, ErrInvalid) {
			t.Fatalf("2^63 bytes: %v", err)
		}
	})
}

func TestCloseIdempotent(t *testing.T) {
	cfg := testConfig("sqlite:" + t.TempDir() + "/r.db")
	s, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if s.Anchors().Enqueue(SessionAnchor{ID: "a", Region: topology.JP}) {
		t.Fatal("Enqueue after Close accepted")
	}
	if _, err := s.Subscriber(context.Background(), "001010000000001"); err == nil {
		t.Fatal("read after Close succeeded")
	}
	// A node restarting in the same process reuses its Registerer.
	s2, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("reopen on the same Registerer: %v", err)
	}
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}
}

// A deployment with its own regions and slices: the regions table gains
// the missing rows at Open, and SQNs use the configured slice.
func TestCustomRegions(t *testing.T) {
	eachBackend(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		cfg := testConfig(dsn)
		cfg.Region = "SG"
		cfg.INDSlices = map[topology.RegionID][2]uint8{"SG": {0, 3}, topology.JP: {4, 7}}
		s := openStore(t, cfg)
		sub, auth := testSubscriber(700, "SG")
		if err := s.Provision(ctx, sub, auth); err != nil {
			t.Fatal(err)
		}
		got, err := s.NextSQNs(ctx, sub.IMSI, "SG", 4)
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range got {
			if q&31 > 3 {
				t.Fatalf("SQN %d has IND %d outside SG's 0-3", q, q&31)
			}
		}
		if _, err := s.UpdateServing(ctx, Serving{IMSI: sub.IMSI, Region: "SG", MMEHost: "m"}); err != nil {
			t.Fatal(err)
		}
	})
}

func TestOpenUnreachable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, dsn := range []string{
		"postgres://postgres@127.0.0.1:1/rdv?sslmode=disable&connect_timeout=5",
		"sqlite:" + t.TempDir() + "/no/such/dir/r.db",
	} {
		s, err := Open(ctx, testConfig(dsn))
		if !errors.Is(err, ErrUnavailable) {
			if s != nil {
				s.Close()
			}
			t.Errorf("Open(%s): %v, want ErrUnavailable", dsn, err)
		}
	}
}
