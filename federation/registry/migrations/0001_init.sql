-- 0001: the registry's tables. Portable SQL: runs unchanged on PostgreSQL 15,
-- CockroachDB and SQLite (notes/registry.md §2.3-2.4): TEXT/BYTEA/BIGINT,
-- no now(), no ::, no FOR UPDATE. Times are BIGINT microseconds since the
-- Unix epoch (UTC), the one representation both drivers scan identically.
-- Statements are separated by a line holding only ";".

-- regions: the routing reference table (GLOBAL on CockroachDB).
-- ind_first..ind_last is the region's IND slice, TS 33.102 Annex C.3.2.
CREATE TABLE IF NOT EXISTS regions (
  region TEXT PRIMARY KEY,
  ind_first INTEGER NOT NULL CHECK (ind_first BETWEEN 0 AND 31),
  ind_last INTEGER NOT NULL CHECK (ind_last BETWEEN 0 AND 31),
  status TEXT NOT NULL DEFAULT 'up' CHECK (status IN ('up','drain','down')),
  updated_us BIGINT NOT NULL DEFAULT 0,
  CHECK (ind_first <= ind_last)
)
;
INSERT INTO regions (region, ind_first, ind_last) VALUES
  ('JP', 0, 7), ('US', 8, 15), ('DE', 16, 23), ('AU', 24, 31)
  ON CONFLICT (region) DO NOTHING
;
-- imsi_ranges: IMSI prefix -> home region (GLOBAL on CockroachDB).
CREATE TABLE IF NOT EXISTS imsi_ranges (
  prefix TEXT PRIMARY KEY CHECK (length(prefix) BETWEEN 1 AND 15),
  home_region TEXT NOT NULL REFERENCES regions (region)
)
;
-- subscribers: profile and sealed keys (REGIONAL BY ROW at home_region).
-- ki/opc: AES-256-GCM nonce||ciphertext||tag under KEK kek_id (secrets.go).
CREATE TABLE IF NOT EXISTS subscribers (
  imsi TEXT PRIMARY KEY CHECK (length(imsi) BETWEEN 6 AND 15),
  msisdn TEXT UNIQUE,
  status TEXT NOT NULL CHECK (status IN ('active','suspended')),
  home_region TEXT NOT NULL REFERENCES regions (region),
  apns TEXT NOT NULL,
  policy TEXT NOT NULL,
  ambr_ul BIGINT NOT NULL DEFAULT 0,
  ambr_dl BIGINT NOT NULL DEFAULT 0,
  ki BYTEA NOT NULL,
  opc BYTEA NOT NULL,
  amf INTEGER NOT NULL CHECK (amf BETWEEN 0 AND 65535),
  kek_id TEXT NOT NULL,
  rev BIGINT NOT NULL,
  updated_us BIGINT NOT NULL
)
;
CREATE INDEX IF NOT EXISTS subscribers_by_kek ON subscribers (kek_id)
;
-- sqn: the SEQ counter of one (subscriber, allocating region), TS 33.102
-- Annex C.1.1/C.3.2: SQN = SEQ << 5 | IND. seq is the highest SEQ reserved;
-- only the allocating region writes its row (REGIONAL BY ROW at region).
CREATE TABLE IF NOT EXISTS sqn (
  imsi TEXT NOT NULL REFERENCES subscribers (imsi) ON DELETE CASCADE,
  region TEXT NOT NULL REFERENCES regions (region),
  seq BIGINT NOT NULL CHECK (seq >= 0),
  PRIMARY KEY (imsi, region)
)
;
-- serving: where the subscriber is registered; the Update-Location CAS row
-- (REGIONAL BY ROW at the subscriber's home_region).
CREATE TABLE IF NOT EXISTS serving (
  imsi TEXT PRIMARY KEY REFERENCES subscribers (imsi) ON DELETE CASCADE,
  home_region TEXT NOT NULL REFERENCES regions (region),
  region TEXT NOT NULL REFERENCES regions (region),
  mme_host TEXT NOT NULL,
  mme_realm TEXT NOT NULL,
  visited_plmn TEXT NOT NULL,
  generation BIGINT NOT NULL CHECK (generation >= 1),
  updated_us BIGINT NOT NULL
)
;
CREATE INDEX IF NOT EXISTS serving_by_region ON serving (region, imsi)
;
-- sessions: PDN session / PDP context anchors, written in batches.
CREATE TABLE IF NOT EXISTS sessions (
  id TEXT PRIMARY KEY,
  imsi TEXT NOT NULL,
  region TEXT NOT NULL REFERENCES regions (region),
  node TEXT NOT NULL,
  apn TEXT NOT NULL,
  ue TEXT NOT NULL,
  teid_c_local BIGINT NOT NULL,
  teid_u_local BIGINT NOT NULL,
  teid_c_peer BIGINT NOT NULL,
  teid_u_peer BIGINT NOT NULL,
  started_us BIGINT NOT NULL,
  ended_us BIGINT NOT NULL DEFAULT 0
)
;
CREATE INDEX IF NOT EXISTS sessions_by_imsi ON sessions (imsi)
;
-- usage: usage records, idempotent on (session, seq).
CREATE TABLE IF NOT EXISTS usage (
  session TEXT NOT NULL,
  seq BIGINT NOT NULL,
  bytes_up BIGINT NOT NULL CHECK (bytes_up >= 0),
  bytes_down BIGINT NOT NULL CHECK (bytes_down >= 0),
  from_us BIGINT NOT NULL,
  to_us BIGINT NOT NULL,
  PRIMARY KEY (session, seq)
)
