package registry

import (
	"database/sql/driver"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rendezvous-core/rendezvous/topology"
)

// Config configures a Store. Open validates it once (validate fills the
// defaults documented on each field and rejects contradictions).
type Config struct {
	// DSN names the database: "sqlite:PATH" for the embedded SQLite file
	// (modernc.org/sqlite, WAL, one writer connection), or a
	// "postgres://…" / "postgresql://…" URL for PostgreSQL or CockroachDB
	// (pgx v5). Required.
	DSN string

	// KEKFile is the key-encryption-key file that Ki and OPc are sealed
	// under (AES-256-GCM). Format: one key per line, "KEYID HEX64" (KEYID:
	// 1–32 characters of [A-Za-z0-9._-], HEX64: 32 bytes in hex); blank lines
	// and lines starting with '#' are ignored; the first key is the primary
	// (new rows are sealed under it), the others are accepted for reading
	// rows sealed before a rotation. The file must not be readable by group
	// or others. Exactly one of KEKFile and KEK must be set.
	KEKFile string
	// KEK is an explicit 32-byte key-encryption key with id KEKID, for tests
	// and the lab (never from a file a human edits). Exactly one of KEKFile
	// and KEK must be set; there is no implicit key.
	KEK   []byte
	KEKID string

	// Region is the caller's region. Required; it must be a key of INDSlices.
	Region topology.RegionID
	// INDSlices are the inclusive IND ranges (TS 33.102 Annex C.3.2, 5-bit
	// IND: 0–31) each region allocates SQNs from. Slices must not overlap.
	// Default: JP 0–7, US 8–15, DE 16–23, AU 24–31.
	INDSlices map[topology.RegionID][2]uint8

	// CacheTTL is how long a cached profile is served without asking the
	// database (bounded staleness, notes/registry.md §4). Default 30 s;
	// negative disables the cache.
	CacheTTL time.Duration
	// CacheEntries bounds the cache (profiles plus invalidation marks).
	// Default 200000.
	CacheEntries int
	// SQNBlock is how many SEQ values a node reserves from the database at
	// once per (subscriber, region): the node keeps issuing SQNs while the
	// database is down until the block is spent. Default 32, 1–65536.
	SQNBlock int
	// SQNBlocksHeld bounds how many (subscriber, region) blocks a node keeps
	// in memory; an evicted block's unused SEQs are skipped (harmless:
	// TS 33.102 C.2 only needs SEQ to increase). Default 100000.
	SQNBlocksHeld int

	// AnchorQueue bounds the session-anchor queue (AnchorWriter.Enqueue
	// drops and counts beyond it). Default 4096.
	AnchorQueue int
	// AnchorBatch is the largest batch of anchors written in one
	// transaction. Default 256.
	AnchorBatch int
	// AnchorFlush is the longest an enqueued anchor waits before it is
	// written. Default 200 ms.
	AnchorFlush time.Duration

	// ImportBatch is the number of rows an Import writes per transaction.
	// Default 500.
	ImportBatch int

	// MaxRetries bounds the whole-transaction retries on 40001/40P01/
	// SQLITE_BUSY. Default 50.
	MaxRetries int
	// MaxConns bounds the PostgreSQL pool and the SQLite read pool.
	// Default 16 (PostgreSQL), 4 (SQLite readers; SQLite has one writer).
	MaxConns int
	// ProbeInterval is how often a degraded Store pings the database to
	// notice it is back. Default 1 s.
	ProbeInterval time.Duration

	// CRDBRegions maps our regions to CockroachDB cluster regions (node
	// --locality region=…) for the multi-region overlay, applied only on
	// CockroachDB. Default JP ap-northeast-1, US us-west-2, DE eu-central-1,
	// AU ap-southeast-2. The first of JP, US, DE, AU present is primary
	// unless CRDBPrimary is set. Checked only on CockroachDB: Open fails
	// there if a region of INDSlices has no cluster region.
	CRDBRegions map[topology.RegionID]string
	CRDBPrimary topology.RegionID
	// CRDBSurviveRegion asks for SURVIVE REGION FAILURE (≥ 3 regions; every
	// write pays the RTT to the nearest other region). Default zone survival.
	CRDBSurviveRegion bool

	// OnChange, when set, is called after every committed change of a
	// subscriber (provision, update, status, keys, delete) with its new
	// revision, so the federation can broadcast the invalidation to the
	// other nodes (they call Store.Invalidate). It must not block.
	OnChange func(imsi topology.IMSI, revision int64)

	// Logger receives operational logs (never key material). nil discards.
	Logger *slog.Logger
	// Registerer receives the Store's metrics. nil → a private registry
	// (never the process-global default: several nodes share a process).
	Registerer prometheus.Registerer
	// Clock is the time source (cache TTL, timestamps). nil → time.Now.
	Clock func() time.Time

	// wrapConnector, when set (tests only), wraps the database connector,
	// e.g. to inject serialization failures or make the database unreachable.
	wrapConnector func(driver.Connector) driver.Connector
}

// DefaultINDSlices are the IND slices of DESIGN.md §2 (TS 33.102 Annex C:
// 5-bit IND, 32 slots, 8 per region).
func DefaultINDSlices() map[topology.RegionID][2]uint8 {
	return map[topology.RegionID][2]uint8{
		topology.JP: {0, 7}, topology.US: {8, 15}, topology.DE: {16, 23}, topology.AU: {24, 31},
	}
}

// DefaultCRDBRegions are the cloud regions of the rendezvous points.
func DefaultCRDBRegions() map[topology.RegionID]string {
	return map[topology.RegionID]string{
		topology.JP: "ap-northeast-1", topology.US: "us-west-2",
		topology.DE: "eu-central-1", topology.AU: "ap-southeast-2",
	}
}

// indBits is the IND length of TS 33.102 Annex C.3.2 (default 5 bits).
const indBits = 5

// maxSEQ is the largest SEQ: SQN is 48 bits = SEQ (43) || IND (5).
const maxSEQ = 1<<(48-indBits) - 1

// validate fills the defaults and checks the configuration. It returns a
// copy; cfg is not modified.
func (cfg Config) validate() (Config, error) {
	bad := func(format string, a ...any) (Config, error) {
		return Config{}, fmt.Errorf("registry: config: %s: %w", fmt.Sprintf(format, a...), ErrInvalid)
	}
	switch {
	case cfg.DSN == "":
		return bad("DSN is required")
	case strings.HasPrefix(cfg.DSN, "sqlite:"):
		if strings.TrimPrefix(cfg.DSN, "sqlite:") == "" {
			return bad("DSN %q names no file", cfg.DSN)
		}
	case strings.HasPrefix(cfg.DSN, "postgres://"), strings.HasPrefix(cfg.DSN, "postgresql://"):
	default:
		return bad("DSN must start with sqlite: or postgres://")
	}
	if (cfg.KEKFile == "") == (len(cfg.KEK) == 0) {
		return bad("exactly one of KEKFile and KEK must be set")
	}
	if len(cfg.KEK) != 0 {
		if len(cfg.KEK) != 32 {
			return bad("KEK is %d bytes, want 32", len(cfg.KEK))
		}
		if !validKeyID(cfg.KEKID) {
			return bad("KEKID %q: want 1-32 characters of [A-Za-z0-9._-]", cfg.KEKID)
		}
		cfg.KEK = append([]byte(nil), cfg.KEK...)
	}
	if cfg.INDSlices == nil {
		cfg.INDSlices = DefaultINDSlices()
	} else {
		m := make(map[topology.RegionID][2]uint8, len(cfg.INDSlices))
		for r, s := range cfg.INDSlices {
			m[r] = s
		}
		cfg.INDSlices = m
	}
	var used [1 << indBits]topology.RegionID
	for r, s := range cfg.INDSlices {
		if r == "" {
			return bad("INDSlices has an empty region")
		}
		if s[0] > s[1] || s[1] >= 1<<indBits {
			return bad("INDSlices[%s] = %d-%d: want first <= last <= 31", r, s[0], s[1])
		}
		for i := s[0]; i <= s[1]; i++ {
			if used[i] != "" {
				return bad("IND %d is in the slices of both %s and %s", i, used[i], r)
			}
			used[i] = r
		}
	}
	if _, ok := cfg.INDSlices[cfg.Region]; !ok {
		return bad("Region %q has no IND slice", cfg.Region)
	}
	if cfg.CacheTTL == 0 {
		cfg.CacheTTL = 30 * time.Second
	}
	def := func(v *int, d, lo, hi int, name string) error {
		if *v == 0 {
			*v = d
		}
		if *v < lo || *v > hi {
			return fmt.Errorf("registry: config: %s = %d: want %d-%d: %w", name, *v, lo, hi, ErrInvalid)
		}
		return nil
	}
	maxConns := 16
	if strings.HasPrefix(cfg.DSN, "sqlite:") {
		maxConns = 4
	}
	for _, c := range []struct {
		v         *int
		d, lo, hi int
		name      string
	}{
		{&cfg.CacheEntries, 200000, 1, 1 << 26, "CacheEntries"},
		{&cfg.SQNBlock, 32, 1, 65536, "SQNBlock"},
		{&cfg.SQNBlocksHeld, 100000, 1, 1 << 26, "SQNBlocksHeld"},
		{&cfg.AnchorQueue, 4096, 1, 1 << 20, "AnchorQueue"},
		{&cfg.AnchorBatch, 256, 1, 10000, "AnchorBatch"},
		{&cfg.ImportBatch, 500, 1, 100000, "ImportBatch"},
		{&cfg.MaxRetries, 50, 1, 10000, "MaxRetries"},
		{&cfg.MaxConns, maxConns, 1, 1000, "MaxConns"},
	} {
		if err := def(c.v, c.d, c.lo, c.hi, c.name); err != nil {
			return Config{}, err
		}
	}
	if cfg.AnchorFlush == 0 {
		cfg.AnchorFlush = 200 * time.Millisecond
	}
	if cfg.AnchorFlush < 0 {
		return bad("AnchorFlush is negative")
	}
	if cfg.ProbeInterval == 0 {
		cfg.ProbeInterval = time.Second
	}
	if cfg.ProbeInterval < 0 {
		return bad("ProbeInterval is negative")
	}
	if cfg.CRDBRegions == nil {
		cfg.CRDBRegions = DefaultCRDBRegions()
	}
	for r, cr := range cfg.CRDBRegions {
		if cr == "" {
			return bad("CRDBRegions[%s] is empty", r)
		}
	}
	if cfg.CRDBPrimary == "" {
		for _, r := range []topology.RegionID{topology.JP, topology.US, topology.DE, topology.AU} {
			if _, ok := cfg.INDSlices[r]; ok {
				cfg.CRDBPrimary = r
				break
			}
		}
		if cfg.CRDBPrimary == "" {
			cfg.CRDBPrimary = cfg.Region
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	return cfg, nil
}

func validKeyID(id string) bool {
	if len(id) == 0 || len(id) > 32 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
