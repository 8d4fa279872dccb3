package registry

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/rendezvous-core/rendezvous/topology"
)

// ImportFormat is the format of an Import stream.
type ImportFormat int

// Import formats.
const (
	// ImportCSV is the lab's subscriber file: a header line naming the
	// columns imsi, ki, opc, home_region (required) and msisdn, amf, apn
	// (optional), in any order, then one subscriber per record. Keys are
	// hex (Ki, OPc: 32 digits; AMF: 4 digits, default 8000); apn is one
	// APN name or several separated by ';' (PDN type ipv4v6, QCI 9, ARP 8).
	ImportCSV ImportFormat = iota + 1
	// ImportJSONLines is one JSON object per line: a Subscriber (its JSON
	// field names) plus "ki", "opc" and "amf" in hex. Blank lines are
	// skipped; unknown fields are errors.
	ImportJSONLines
)

func (f ImportFormat) String() string {
	switch f {
	case ImportCSV:
		return "csv"
	case ImportJSONLines:
		return "jsonl"
	}
	return fmt.Sprintf("ImportFormat(%d)", int(f))
}

// MaxImportLine is the longest line Import accepts (a longer one ends the
// import with an error: the input is not a subscriber file).
const MaxImportLine = 64 << 10

// MaxImportErrors is how many row errors an ImportReport keeps (Failed
// counts them all).
const MaxImportErrors = 1000

// ImportReport is the outcome of an Import.
type ImportReport struct {
	Rows     int        // data rows read (CSV header and blank lines excluded)
	Imported int        // rows written (new subscribers and replaced ones)
	Failed   int        // rows rejected
	Errors   []RowError // the first MaxImportErrors rejected rows, in order
}

// RowError is a rejected import row. Its message never holds key material.
type RowError struct {
	Line int // 1-based line of the input where the row starts
	Err  error
}

func (e RowError) Error() string { return fmt.Sprintf("line %d: %v", e.Line, e.Err) }
func (e RowError) Unwrap() error { return e.Err }

type importRow struct {
	line int
	sub  Subscriber
	auth AuthData
	row  subscriberRow
}

// Import reads subscribers from r and writes them: new IMSIs are created,
// existing ones replaced (profile and keys; revision bumped). It streams in
// constant memory and writes ImportBatch rows per transaction. A bad row —
// unparsable, invalid (short Ki, non-digit IMSI, unknown region, …) or
// refused by the database (MSISDN taken) — is reported in the ImportReport
// by line and written not at all; the other rows land. The error is for
// what stops the whole import: an unreadable stream, a bad header, a line
// over MaxImportLine, the database unreachable (rows of earlier batches
// stay written) or ctx done.
func (s *Store) Import(ctx context.Context, r io.Reader, format ImportFormat) (ImportReport, error) {
	var rep ImportReport
	imp := &importer{s: s, rep: &rep}
	var err error
	switch format {
	case ImportCSV:
		err = imp.csv(ctx, &lineGuard{r: r, max: MaxImportLine})
	case ImportJSONLines:
		err = imp.jsonl(ctx, &lineGuard{r: r, max: MaxImportLine})
	default:
		return rep, fmt.Errorf("registry: import: unknown format %v: %w", format, ErrInvalid)
	}
	if err == nil {
		err = imp.flush(ctx)
	}
	s.m.importRows.WithLabelValues("imported").Add(float64(rep.Imported))
	s.m.importRows.WithLabelValues("failed").Add(float64(rep.Failed))
	s.log.Info("registry: import", "format", format.String(), "rows", rep.Rows, "imported", rep.Imported, "failed", rep.Failed)
	if err != nil {
		return rep, fmt.Errorf("registry: import: %w", err)
	}
	return rep, nil
}

type importer struct {
	s     *Store
	rep   *ImportReport
	batch []importRow
	// sink receives each parsed row; nil → add (validate, batch, write).
	// The fuzz targets set it to exercise the parsers without a database.
	sink func(ctx context.Context, line int, sub Subscriber, auth AuthData) error
}

func (imp *importer) row(ctx context.Context, line int, sub Subscriber, auth AuthData) error {
	if imp.sink != nil {
		imp.rep.Rows++
		return imp.sink(ctx, line, sub, auth)
	}
	return imp.add(ctx, line, sub, auth)
}

func (imp *importer) reject(line int, err error) {
	imp.rep.Failed++
	if len(imp.rep.Errors) < MaxImportErrors {
		imp.rep.Errors = append(imp.rep.Errors, RowError{Line: line, Err: err})
	}
}

// add validates one parsed row and queues it for the next batch.
func (imp *importer) add(ctx context.Context, line int, sub Subscriber, auth AuthData) error {
	imp.rep.Rows++
	if err := imp.s.validate(&sub); err != nil {
		imp.reject(line, err)
		return nil
	}
	if err := validateAuth(sub.IMSI, auth); err != nil {
		imp.reject(line, err)
		return nil
	}
	row, err := imp.s.encode(sub, auth)
	if err != nil {
		return err
	}
	imp.batch = append(imp.batch, importRow{line: line, sub: sub, auth: auth, row: row})
	if len(imp.batch) >= imp.s.cfg.ImportBatch {
		return imp.flush(ctx)
	}
	return nil
}

const upsertTail = `
  ON CONFLICT (imsi) DO UPDATE SET msisdn = excluded.msisdn, status = excluded.status, home_region = excluded.home_region,
  apns = excluded.apns, policy = excluded.policy, ambr_ul = excluded.ambr_ul, ambr_dl = excluded.ambr_dl,
  ki = excluded.ki, opc = excluded.opc, amf = excluded.amf, kek_id = excluded.kek_id,
  rev = subscribers.rev + 1, updated_us = excluded.updated_us
  RETURNING imsi, rev`

// importChunk is the most rows one INSERT statement carries on PostgreSQL
// and CockroachDB (14 parameters each: far below the 65535 limit): one
// round trip per chunk. SQLite has no round trips but resolves $N names
// linearly, so it reuses a prepared one-row statement instead.
const importChunk = 100

// flush writes the batch in one transaction (multi-row upserts); if the
// database refuses a row, each row is written in its own transaction so the
// bad ones are reported and the others land.
func (imp *importer) flush(ctx context.Context) error {
	if len(imp.batch) == 0 {
		return nil
	}
	defer func() {
		clear(imp.batch)
		imp.batch = imp.batch[:0]
	}()
	revs := make([]int64, len(imp.batch))
	err := imp.s.inTx(ctx, "import", func(tx *sql.Tx) error {
		if imp.s.dialect == dialectSQLite {
			st, err := tx.PrepareContext(ctx, insertSubscriber+upsertTail)
			if err != nil {
				return err
			}
			defer st.Close()
			for i := range imp.batch {
				if err := imp.writeOne(ctx, st, &imp.batch[i], &revs[i]); err != nil {
					return err
				}
			}
			return nil
		}
		for start := 0; start < len(imp.batch); {
			// A chunk holds each IMSI once (an upsert may not touch a
			// row twice in one statement).
			seen := make(map[topology.IMSI]bool, importChunk)
			end := start
			for end < len(imp.batch) && end-start < importChunk && !seen[imp.batch[end].sub.IMSI] {
				seen[imp.batch[end].sub.IMSI] = true
				end++
			}
			if err := imp.writeRows(ctx, tx, imp.batch[start:end], revs[start:end]); err != nil {
				return err
			}
			start = end
		}
		return nil
	})
	if err == nil {
		for i := range imp.batch {
			imp.done(imp.batch[i].sub.IMSI, revs[i])
		}
		return nil
	}
	if errors.Is(err, ErrUnavailable) || ctx.Err() != nil || !isConstraintViolation(err) {
		return err
	}
	for i := range imp.batch {
		b := imp.batch[i : i+1]
		rev := make([]int64, 1)
		err := imp.s.inTx(ctx, "import", func(tx *sql.Tx) error { return imp.writeRows(ctx, tx, b, rev) })
		switch {
		case err == nil:
			imp.done(b[0].sub.IMSI, rev[0])
		case isConstraintViolation(err):
			imp.reject(b[0].line, fmt.Errorf("subscriber %s: refused by the database (MSISDN taken?): %w", b[0].sub.IMSI, ErrConflict))
		default:
			return err
		}
	}
	return nil
}

func (imp *importer) writeOne(ctx context.Context, st *sql.Stmt, b *importRow, rev *int64) error {
	var imsi string
	return st.QueryRowContext(ctx, string(b.sub.IMSI), b.row.msisdn, string(b.sub.Status), string(b.sub.HomeRegion),
		b.row.apns, b.row.policy, b.row.ambrUL, b.row.ambrDL, b.row.ki, b.row.opc, b.row.amf, b.row.kekID,
		imp.s.newRevision(), imp.s.cfg.Clock().UnixMicro()).Scan(&imsi, rev)
}

// writeRows upserts rows (distinct IMSIs) in one statement and stores each
// row's new revision in revs.
func (imp *importer) writeRows(ctx context.Context, tx *sql.Tx, rows []importRow, revs []int64) error {
	var q strings.Builder
	q.WriteString(insertSubscriberCols)
	args := make([]any, 0, 14*len(rows))
	now := imp.s.cfg.Clock().UnixMicro()
	for i := range rows {
		b := &rows[i]
		if i > 0 {
			q.WriteString(", ")
		}
		q.WriteByte('(')
		for j := 1; j <= 14; j++ {
			if j > 1 {
				q.WriteString(", ")
			}
			fmt.Fprintf(&q, "$%d", len(args)+j)
		}
		q.WriteByte(')')
		args = append(args, string(b.sub.IMSI), b.row.msisdn, string(b.sub.Status), string(b.sub.HomeRegion),
			b.row.apns, b.row.policy, b.row.ambrUL, b.row.ambrDL, b.row.ki, b.row.opc, b.row.amf, b.row.kekID,
			imp.s.newRevision(), now)
	}
	q.WriteString(upsertTail)
	res, err := tx.QueryContext(ctx, q.String(), args...)
	if err != nil {
		return err
	}
	defer res.Close()
	got := make(map[string]int64, len(rows))
	for res.Next() {
		var imsi string
		var rev int64
		if err := res.Scan(&imsi, &rev); err != nil {
			return err
		}
		got[imsi] = rev
	}
	if err := res.Err(); err != nil {
		return err
	}
	for i := range rows {
		rev, ok := got[string(rows[i].sub.IMSI)]
		if !ok {
			return fmt.Errorf("import: upsert of %s returned no revision", rows[i].sub.IMSI)
		}
		revs[i] = rev
	}
	return nil
}

func (imp *importer) done(imsi topology.IMSI, rev int64) {
	imp.rep.Imported++
	imp.s.cache.invalidateCached(imsi, rev)
	if imp.s.cfg.OnChange != nil {
		imp.s.cfg.OnChange(imsi, rev)
	}
}

// csvColumns lists the CSV columns and whether each is required.
func csvColumns() map[string]bool {
	return map[string]bool{"imsi": true, "msisdn": false, "ki": true, "opc": true, "amf": false, "apn": false, "home_region": true}
}

func (imp *importer) csv(ctx context.Context, r io.Reader) error {
	cr := csv.NewReader(r)
	cr.ReuseRecord = true
	cr.TrimLeadingSpace = true
	header, err := cr.Read()
	if err == io.EOF {
		return fmt.Errorf("empty input: %w", ErrInvalid)
	}
	if err != nil {
		return fmt.Errorf("header: %w", err)
	}
	columns := csvColumns()
	col := map[string]int{}
	for i, h := range header {
		h = strings.ToLower(strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")))
		if _, ok := columns[h]; !ok {
			return fmt.Errorf("header: unknown column %q: %w", h, ErrInvalid)
		}
		if _, dup := col[h]; dup {
			return fmt.Errorf("header: column %q twice: %w", h, ErrInvalid)
		}
		col[h] = i
	}
	for c, required := range columns {
		if _, ok := col[c]; required && !ok {
			return fmt.Errorf("header: no %q column: %w", c, ErrInvalid)
		}
	}
	field := func(rec []string, name string) string {
		if i, ok := col[name]; ok {
			return strings.TrimSpace(rec[i])
		}
		return ""
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		rec, err := cr.Read()
		if err == io.EOF {
			return nil
		}
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			imp.rep.Rows++
			imp.reject(pe.StartLine, fmt.Errorf("%w: %v", ErrInvalid, pe.Err))
			continue
		}
		if err != nil {
			return err
		}
		line, _ := cr.FieldPos(0)
		sub := Subscriber{
			IMSI:       topology.IMSI(field(rec, "imsi")),
			MSISDN:     field(rec, "msisdn"),
			HomeRegion: topology.RegionID(strings.ToUpper(field(rec, "home_region"))),
		}
		for _, name := range strings.Split(field(rec, "apn"), ";") {
			if name = strings.TrimSpace(name); name != "" {
				sub.APNs = append(sub.APNs, APN{Name: name, PDNType: PDNIPv4v6, QCI: 9, ARPPriority: 8})
			}
		}
		auth, err := parseKeys(field(rec, "ki"), field(rec, "opc"), field(rec, "amf"))
		if err != nil {
			imp.rep.Rows++
			imp.reject(line, err)
			continue
		}
		if err := imp.row(ctx, line, sub, auth); err != nil {
			return err
		}
	}
}

// importJSON is one JSON-lines record.
type importJSON struct {
	Subscriber
	Ki  string `json:"ki"`
	OPc string `json:"opc"`
	AMF string `json:"amf"`
}

func (imp *importer) jsonl(ctx context.Context, r io.Reader) error {
	br := bufio.NewReaderSize(r, MaxImportLine+1024)
	for line := 1; ; line++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		b, err := br.ReadSlice('\n')
		if err != nil && err != io.EOF {
			return err
		}
		if t := bytes.TrimSpace(b); len(t) > 0 {
			var rec importJSON
			dec := json.NewDecoder(bytes.NewReader(t))
			dec.DisallowUnknownFields()
			if derr := dec.Decode(&rec); derr != nil {
				imp.rep.Rows++
				imp.reject(line, jsonError(derr))
			} else if dec.More() {
				imp.rep.Rows++
				imp.reject(line, fmt.Errorf("more than one JSON value on the line: %w", ErrInvalid))
			} else if auth, kerr := parseKeys(rec.Ki, rec.OPc, rec.AMF); kerr != nil {
				imp.rep.Rows++
				imp.reject(line, kerr)
			} else if aerr := imp.row(ctx, line, rec.Subscriber, auth); aerr != nil {
				return aerr
			}
		}
		if err == io.EOF {
			return nil
		}
	}
}

// jsonError describes a JSON error without quoting the input (which may
// hold keys).
func jsonError(err error) error {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Errorf("JSON syntax error at byte %d: %w", se.Offset, ErrInvalid)
	case errors.As(err, &te):
		return fmt.Errorf("JSON field %q: want %v: %w", te.Field, te.Type, ErrInvalid)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return fmt.Errorf("%s: %w", err.Error(), ErrInvalid)
	}
	return fmt.Errorf("bad JSON: %w", ErrInvalid)
}

// parseKeys decodes hex Ki, OPc (16 bytes each) and AMF (2 bytes, "" →
// 8000: the AMF separation bit of TS 33.401 Annex H). Errors never quote
// the values.
func parseKeys(ki, opc, amf string) (AuthData, error) {
	var a AuthData
	if err := hexField(a.Ki[:], ki, "Ki"); err != nil {
		return AuthData{}, err
	}
	if err := hexField(a.OPc[:], opc, "OPc"); err != nil {
		return AuthData{}, err
	}
	if amf == "" {
		amf = "8000"
	}
	if err := hexField(a.AMF[:], amf, "AMF"); err != nil {
		return AuthData{}, err
	}
	return a, nil
}

func hexField(dst []byte, s, name string) error {
	if len(s) != 2*len(dst) {
		return fmt.Errorf("%s is %d hex digits, want %d: %w", name, len(s), 2*len(dst), ErrInvalid)
	}
	if _, err := hex.Decode(dst, []byte(s)); err != nil {
		clear(dst)
		return fmt.Errorf("%s is not hex: %w", name, ErrInvalid)
	}
	return nil
}

// lineGuard fails the read once a line exceeds max bytes, so a stream
// without newlines cannot make the parsers buffer it whole.
type lineGuard struct {
	r   io.Reader
	max int
	cur int
}

var errLineTooLong = fmt.Errorf("a line is longer than %d bytes: %w", MaxImportLine, ErrInvalid)

func (g *lineGuard) Read(p []byte) (int, error) {
	n, err := g.r.Read(p)
	for i := 0; i < n; i++ {
		if p[i] == '\n' {
			g.cur = 0
			continue
		}
		if g.cur++; g.cur > g.max {
			return i, errLineTooLong
		}
	}
	return n, err
}
