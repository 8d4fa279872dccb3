package registry

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Store is one node's handle on the registry: the database, the
// read-through cache, the SQN blocks it holds and the session-anchor writer.
// It is safe for concurrent use. Open starts its goroutines; Close stops
// them and waits.
type Store struct {
	cfg     Config
	log     *slog.Logger
	w, r    *sql.DB // writer and reader (the same pool on PostgreSQL)
	dialect dialect
	version string
	kr      *keyring
	m       *metrics

	cache   *cache
	sqn     *sqnBlocks
	anchors *AnchorWriter

	degraded atomic.Bool

	stop      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

type metrics struct {
	cacheHits, cacheMisses, cacheStale prometheus.Counter
	txRetries                          *prometheus.CounterVec
	sqnBlocks, sqnIssued               prometheus.Counter
	anchorsWritten, anchorsDropped     prometheus.Counter
	anchorBatchesFailed                prometheus.Counter
	importRows                         *prometheus.CounterVec
	degraded                           prometheus.Gauge

	reg        prometheus.Registerer
	registered []prometheus.Collector
}

// unregister removes the metrics from the Registerer, so that a Store can
// be opened again on the same one (node restart in one process).
func (m *metrics) unregister() {
	for _, c := range m.registered {
		m.reg.Unregister(c)
	}
	m.registered = nil
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	const ns, sub = "rendezvous", "registry"
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help})
	}
	m := &metrics{
		cacheHits:           c("cache_hits_total", "Profile/auth reads answered from the cache within its TTL."),
		cacheMisses:         c("cache_misses_total", "Profile/auth reads that went to the database."),
		cacheStale:          c("cache_stale_served_total", "Reads answered from an expired cache entry because the database was unreachable."),
		txRetries:           prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "tx_retries_total", Help: "Whole-transaction retries after 40001/40P01/SQLITE_BUSY, by operation."}, []string{"op"}),
		sqnBlocks:           c("sqn_blocks_reserved_total", "SEQ blocks reserved from the database."),
		sqnIssued:           c("sqn_issued_total", "SQNs issued."),
		anchorsWritten:      c("anchors_written_total", "Session anchors written."),
		anchorsDropped:      c("anchors_dropped_total", "Session anchors dropped because the queue was full."),
		anchorBatchesFailed: c("anchor_batches_failed_total", "Session-anchor batch writes that failed (kept and retried)."),
		importRows:          prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "import_rows_total", Help: "Imported rows by result."}, []string{"result"}),
		degraded:            prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "degraded", Help: "1 while the database is unreachable and reads are served from the cache."}),
		reg:                 reg,
	}
	for _, col := range []prometheus.Collector{m.cacheHits, m.cacheMisses, m.cacheStale, m.txRetries, m.sqnBlocks,
		m.sqnIssued, m.anchorsWritten, m.anchorsDropped, m.anchorBatchesFailed, m.importRows, m.degraded} {
		if err := reg.Register(col); err != nil {
			m.unregister()
			return nil, fmt.Errorf("registry: register metrics: %w", err)
		}
		m.registered = append(m.registered, col)
	}
	return m, nil
}

// Open validates cfg, connects, applies the embedded migrations (and the
// CockroachDB overlay when the server is CockroachDB) and starts the
// Store's goroutines (anchor writer, degraded-mode probe).
func Open(ctx context.Context, cfg Config) (*Store, error) {
	cfg, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	var kr *keyring
	if cfg.KEKFile != "" {
		kr, err = loadKEKFile(cfg.KEKFile)
	} else {
		kr, err = newKeyring([]string{cfg.KEKID}, [][]byte{cfg.KEK})
	}
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	w, r, d, err := openDBs(cfg)
	if err != nil {
		m.unregister()
		return nil, err
	}
	s := &Store{
		cfg: cfg, log: cfg.Logger, w: w, r: r, dialect: d, kr: kr, m: m,
		stop: make(chan struct{}),
	}
	closeDBs := func() {
		m.unregister()
		_ = w.Close()
		if r != w {
			_ = r.Close()
		}
	}
	switch d {
	case dialectSQLite:
		err = s.w.QueryRowContext(ctx, `SELECT sqlite_version()`).Scan(&s.version)
		s.version = "SQLite " + s.version
	default:
		err = s.w.QueryRowContext(ctx, `SELECT version()`).Scan(&s.version)
		if err == nil && isCockroach(s.version) {
			s.dialect = dialectCockroach
		}
	}
	if err != nil {
		closeDBs()
		if unreachable(err) {
			return nil, fmt.Errorf("registry: open: %w (%w)", ErrUnavailable, err)
		}
		return nil, fmt.Errorf("registry: open: %w", err)
	}
	if err := s.migrate(ctx); err != nil {
		closeDBs()
		return nil, err
	}
	s.cache = newCache(cfg.CacheEntries)
	s.sqn = newSQNBlocks(cfg.SQNBlocksHeld)
	s.anchors = newAnchorWriter(s)
	s.wg.Add(2)
	go s.anchors.run()
	go s.probe()
	s.log.Info("registry: open", "dialect", s.dialect.String(), "server", s.version, "region", string(cfg.Region), "kek", kr.primary)
	return s, nil
}

// Close stops the anchor writer (after a last flush) and the probe, waits
// for them, and closes the database. It is idempotent and returns the first
// error.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.stop)
		s.wg.Wait()
		err := s.anchors.closeErr
		if e := s.w.Close(); e != nil && err == nil {
			err = fmt.Errorf("registry: close: %w", e)
		}
		if s.r != s.w {
			if e := s.r.Close(); e != nil && err == nil {
				err = fmt.Errorf("registry: close: %w", e)
			}
		}
		s.m.unregister()
		s.closeErr = err
	})
	return s.closeErr
}

// Degraded reports whether the database is unreachable: reads are served
// from the cache, SQNs from the blocks already reserved.
func (s *Store) Degraded() bool { return s.degraded.Load() }

func (s *Store) markDown(err error) {
	if !s.degraded.Swap(true) {
		s.m.degraded.Set(1)
		s.log.Warn("registry: database unreachable, serving from cache", "err", err)
	}
}

func (s *Store) markUp() {
	if s.degraded.Load() && s.degraded.Swap(false) {
		s.m.degraded.Set(0)
		s.log.Info("registry: database reachable again")
	}
}

// probe pings the database every ProbeInterval while degraded, so that a
// node answering only from its cache notices the database is back.
func (s *Store) probe() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.ProbeInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		if !s.degraded.Load() {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ProbeInterval)
		err := s.w.PingContext(ctx)
		if err == nil {
			_, err = s.w.ExecContext(ctx, `SELECT 1`)
		}
		cancel()
		if err == nil {
			s.markUp()
		}
	}
}

// Ping checks that the database answers; it updates Degraded.
func (s *Store) Ping(ctx context.Context) error {
	return s.retry(ctx, "ping", func() error {
		var one int
		return s.r.QueryRowContext(ctx, `SELECT 1`).Scan(&one)
	})
}

// Dialect names the backend: "sqlite", "postgres" or "cockroachdb".
func (s *Store) Dialect() string { return s.dialect.String() }

var errClosed = errors.New("registry: store closed")
