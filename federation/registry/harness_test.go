package registry

import (
	"context"
	"crypto/rand"
	"database/sql"
	"database/sql/driver"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // "pgx" driver for the admin connection
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/rendezvous-core/rendezvous/topology"
)

// The same suite runs on every backend: the embedded SQLite file (always)
// and PostgreSQL 15 (RDV_TEST_PG_DSN; each test gets a fresh database,
// dropped afterwards). With RDV_REQUIRE_ALL=1 a missing server fails.

type backend struct {
	name string
	dsn  func(t testing.TB) string // a fresh, empty database
}

func backends() []backend {
	return []backend{
		{"sqlite", func(t testing.TB) string { return "sqlite:" + filepath.Join(t.TempDir(), "registry.db") }},
		{"postgres", freshPostgres},
	}
}

// eachBackend runs fn as a subtest per backend.
func eachBackend(t *testing.T, fn func(t *testing.T, dsn string)) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) { fn(t, b.dsn(t)) })
	}
}

func freshPostgres(t testing.TB) string {
	t.Helper()
	admin := os.Getenv("RDV_TEST_PG_DSN")
	if admin == "" {
		if os.Getenv("RDV_REQUIRE_ALL") == "1" {
			t.Fatal("RDV_TEST_PG_DSN is not set and RDV_REQUIRE_ALL=1: the PostgreSQL suite must run")
		}
		t.Skip("RDV_TEST_PG_DSN not set: skipping the PostgreSQL backend")
	}
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatalf("RDV_TEST_PG_DSN: %v", err)
	}
	db, err := sql.Open("pgx", admin)
	if err != nil {
		t.Fatalf("admin connection: %v", err)
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	name := "rdv_t_" + hex.EncodeToString(rnd[:])
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := db.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		db.Close()
		t.Fatalf("create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := db.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
		db.Close()
	})
	u.Path = "/" + name
	return u.String()
}

var testKEK = func() []byte {
	k, _ := hex.DecodeString("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")
	return k
}()

func testConfig(dsn string) Config {
	return Config{
		DSN: dsn, KEK: testKEK, KEKID: "test1", Region: topology.JP,
		Registerer: prometheus.NewRegistry(),
	}
}

func openStore(t testing.TB, cfg Config) *Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := Open(ctx, cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// fakeClock is the only fake besides failure injection.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func counter(t testing.TB, c prometheus.Collector) float64 {
	t.Helper()
	ch := make(chan prometheus.Metric, 16)
	c.Collect(ch)
	close(ch)
	total := 0.0
	for m := range ch {
		var d dto.Metric
		if err := m.Write(&d); err != nil {
			t.Fatal(err)
		}
		switch {
		case d.Counter != nil:
			total += d.Counter.GetValue()
		case d.Gauge != nil:
			total += d.Gauge.GetValue()
		}
	}
	return total
}

// testSubscriber builds a valid subscriber and keys from a number.
func testSubscriber(i int, home topology.RegionID) (Subscriber, AuthData) {
	imsi := topology.IMSI(fmt.Sprintf("00101%010d", i))
	sub := Subscriber{
		IMSI: imsi, MSISDN: fmt.Sprintf("8190%08d", i), HomeRegion: home,
		APNs:   []APN{{Name: "internet", PDNType: PDNIPv4, QCI: 9, ARPPriority: 8, AMBRUplink: 1e6, AMBRDownlink: 2e6}},
		Policy: Policy{BarredCountries: []string{"KP"}, BarredRATs: []RAT{RATGERAN}},
	}
	var a AuthData
	for j := range a.Ki {
		a.Ki[j] = byte(i*7 + j + 1)
		a.OPc[j] = byte(i*13 + 3*j + 5)
	}
	a.AMF = [2]byte{0x80, 0x00}
	return sub, a
}

// ---- failure injection: a driver.Connector wrapper ----

type faults struct {
	down        atomic.Bool  // every operation fails as if the server were unreachable
	failCommits atomic.Int32 // the next N commits roll back and fail with 40001
	commits     atomic.Int64
}

var errInjectedDown = &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("injected: database unreachable")}

func (f *faults) wrap(c driver.Connector) driver.Connector { return &faultConnector{c: c, f: f} }

type faultConnector struct {
	c driver.Connector
	f *faults
}

func (fc *faultConnector) Connect(ctx context.Context) (driver.Conn, error) {
	if fc.f.down.Load() {
		return nil, errInjectedDown
	}
	c, err := fc.c.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return &faultConn{c: c, f: fc.f}, nil
}

func (fc *faultConnector) Driver() driver.Driver { return fc.c.Driver() }

type faultConn struct {
	c driver.Conn
	f *faults
}

func (c *faultConn) Prepare(q string) (driver.Stmt, error) {
	return c.PrepareContext(context.Background(), q)
}

func (c *faultConn) PrepareContext(ctx context.Context, q string) (driver.Stmt, error) {
	if c.f.down.Load() {
		return nil, errInjectedDown
	}
	if p, ok := c.c.(driver.ConnPrepareContext); ok {
		return p.PrepareContext(ctx, q)
	}
	return c.c.Prepare(q)
}

func (c *faultConn) Close() error { return c.c.Close() }

func (c *faultConn) Begin() (driver.Tx, error) {
	return c.BeginTx(context.Background(), driver.TxOptions{})
}

func (c *faultConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	if c.f.down.Load() {
		return nil, errInjectedDown
	}
	tx, err := c.c.(driver.ConnBeginTx).BeginTx(ctx, opts)
	if err != nil {
		return nil, err
	}
	return &faultTx{tx: tx, f: c.f}, nil
}

func (c *faultConn) ExecContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Result, error) {
	if c.f.down.Load() {
		return nil, errInjectedDown
	}
	e, ok := c.c.(driver.ExecerContext)
	if !ok {
		return nil, driver.ErrSkip
	}
	return e.ExecContext(ctx, q, args)
}

func (c *faultConn) QueryContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Rows, error) {
	if c.f.down.Load() {
		return nil, errInjectedDown
	}
	e, ok := c.c.(driver.QueryerContext)
	if !ok {
		return nil, driver.ErrSkip
	}
	return e.QueryContext(ctx, q, args)
}

func (c *faultConn) Ping(ctx context.Context) error {
	if c.f.down.Load() {
		return errInjectedDown
	}
	if p, ok := c.c.(driver.Pinger); ok {
		return p.Ping(ctx)
	}
	return nil
}

func (c *faultConn) ResetSession(ctx context.Context) error {
	if c.f.down.Load() {
		return driver.ErrBadConn
	}
	if r, ok := c.c.(driver.SessionResetter); ok {
		return r.ResetSession(ctx)
	}
	return nil
}

func (c *faultConn) IsValid() bool {
	if c.f.down.Load() {
		return false
	}
	if v, ok := c.c.(driver.Validator); ok {
		return v.IsValid()
	}
	return true
}

func (c *faultConn) CheckNamedValue(nv *driver.NamedValue) error {
	if n, ok := c.c.(driver.NamedValueChecker); ok {
		return n.CheckNamedValue(nv)
	}
	return driver.ErrSkip
}

type faultTx struct {
	tx driver.Tx
	f  *faults
}

func (t *faultTx) Commit() error {
	if t.f.down.Load() {
		_ = t.tx.Rollback()
		return errInjectedDown
	}
	if t.f.failCommits.Add(-1) >= 0 {
		_ = t.tx.Rollback()
		return &pgconn.PgError{Severity: "ERROR", Code: "40001", Message: "injected: could not serialize access"}
	}
	t.f.failCommits.Store(0)
	t.f.commits.Add(1)
	return t.tx.Commit()
}

func (t *faultTx) Rollback() error { return t.tx.Rollback() }
