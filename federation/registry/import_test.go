package registry

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/rendezvous-core/rendezvous/topology"
)

const ki1 = "465b5ce8b199b49faa5f0a2ee238a6bc"
const opc1 = "cd63cb71954a9f4e48a5994e37a02baf"

func TestImportCSV(t *testing.T) {
	eachBackend(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		cfg := testConfig(dsn)
		cfg.ImportBatch = 3 // several batches, one with a row the database refuses
		s := openStore(t, cfg)
		csv := strings.Join([]string{
			"imsi,msisdn,ki,opc,amf,apn,home_region",
			"001010000000001,819000000001," + ki1 + "," + opc1 + ",8000,internet,JP",           // 2 ok
			"001010000000002,819000000002," + ki1[:30] + "," + opc1 + ",8000,internet,US",      // 3 short Ki
			"00101000000000x,819000000003," + ki1 + "," + opc1 + ",8000,internet,DE",           // 4 non-digit IMSI
			"001010000000004,819000000004," + ki1 + "," + opc1 + ",8000,internet,FR",           // 5 unknown region
			"001010000000005,819000000005," + ki1 + "," + opc1 + ",,internet;iot,de",           // 6 ok (default AMF, lower-case region)
			"001010000000006,819000000001," + ki1 + "," + opc1 + ",8000,internet,AU",           // 7 MSISDN of line 2: DB refuses
			"001010000000007,819000000007," + ki1 + ",zz" + opc1[2:] + ",8000,internet,AU",     // 8 OPc not hex
			"001010000000008,819000000008," + ki1 + "," + opc1 + ",8000,internet",              // 9 missing field
			"\"001010000000009\",819000000009," + ki1 + "," + opc1 + ",8000,\"inter\nnet\",AU", // 10-11 quoted newline: bad APN
			"001010000000010,," + ki1 + "," + opc1 + ",8000,,US",                               // 12 ok: no MSISDN, no APN
		}, "\n") + "\n"
		rep, err := s.Import(ctx, strings.NewReader(csv), ImportCSV)
		if err != nil {
			t.Fatalf("Import: %v", err)
		}
		wantLines := []int{3, 4, 5, 7, 8, 9, 10}
		var gotLines []int
		for _, e := range rep.Errors {
			gotLines = append(gotLines, e.Line)
		}
		if fmt.Sprint(gotLines) != fmt.Sprint(wantLines) {
			for _, e := range rep.Errors {
				t.Log(e)
			}
			t.Fatalf("bad rows reported at lines %v, want %v", gotLines, wantLines)
		}
		if rep.Rows != 10 || rep.Imported != 3 || rep.Failed != 7 {
			t.Fatalf("report %+v", rep)
		}
		for _, e := range rep.Errors {
			if e.Line != 7 && !errors.Is(e, ErrInvalid) {
				t.Errorf("line %d: %v is not ErrInvalid", e.Line, e.Err)
			}
		}
		for _, imsi := range []topology.IMSI{"001010000000001", "001010000000005", "001010000000010"} {
			if _, err := s.Subscriber(ctx, imsi); err != nil {
				t.Errorf("row %s did not land: %v", imsi, err)
			}
		}
		for _, imsi := range []topology.IMSI{"001010000000002", "001010000000004", "001010000000006", "001010000000007", "001010000000008", "001010000000009"} {
			if _, err := s.Subscriber(ctx, imsi); !errors.Is(err, ErrNotFound) {
				t.Errorf("bad row %s half-applied: %v", imsi, err)
			}
		}
		sub, _ := s.Subscriber(ctx, "001010000000005")
		if len(sub.APNs) != 2 || sub.APNs[1].Name != "iot" || sub.HomeRegion != topology.DE {
			t.Fatalf("row 6: %+v", sub)
		}
		a, _ := s.AuthData(ctx, "001010000000005")
		if hex.EncodeToString(a.Ki[:]) != ki1 || hex.EncodeToString(a.OPc[:]) != opc1 || a.AMF != [2]byte{0x80, 0} {
			t.Fatal("imported keys differ")
		}
		// Re-import replaces (revision bumped), idempotent for the lab file.
		before, _ := s.Subscriber(ctx, "001010000000001")
		rep2, err := s.Import(ctx, strings.NewReader(csv), ImportCSV)
		if err != nil || rep2.Imported != 3 {
			t.Fatalf("re-import: %+v %v", rep2, err)
		}
		s.Invalidate("001010000000001", before.Revision+1)
		after, _ := s.Subscriber(ctx, "001010000000001")
		if after.Revision != before.Revision+1 {
			t.Fatalf("re-import revision %d -> %d", before.Revision, after.Revision)
		}
	})
}

func TestImportJSONLines(t *testing.T) {
	eachBackend(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		s := openStore(t, testConfig(dsn))
		jl := strings.Join([]string{
			`{"imsi":"001010000000101","msisdn":"819000000101","home_region":"US","apns":[{"name":"internet","pdn_type":"ipv4","qci":9,"arp_priority":8,"ambr_ul":1000,"ambr_dl":2000}],"policy":{"barred_countries":["KP"],"pin":"JP"},"ambr_ul":5,"ambr_dl":6,"ki":"` + ki1 + `","opc":"` + opc1 + `","amf":"8000"}`,
			``,
			`{"imsi":"001010000000102","home_region":"US","ki":"` + ki1 + `","opc":"` + opc1 + `","color":"red"}`,
			`{"imsi":"001010000000103","home_region":"US","ki":"` + ki1 + `"`,
			`{"imsi":"001010000000104","home_region":"US","ki":"` + ki1 + `","opc":"` + opc1 + `","policy":{"barred_rats":["5G"]}}`,
			`{"imsi":"001010000000105","home_region":"AU","ki":"` + ki1 + `","opc":"` + opc1 + `"}`,
		}, "\n")
		rep, err := s.Import(ctx, strings.NewReader(jl), ImportJSONLines)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Rows != 5 || rep.Imported != 2 || rep.Failed != 3 {
			t.Fatalf("report %+v", rep)
		}
		if rep.Errors[0].Line != 3 || rep.Errors[1].Line != 4 || rep.Errors[2].Line != 5 {
			t.Fatalf("errors %v", rep.Errors)
		}
		sub, err := s.Subscriber(ctx, "001010000000101")
		if err != nil || sub.Policy.Pin != topology.JP || sub.APNs[0].AMBRDownlink != 2000 || sub.AMBRDownlink != 6 {
			t.Fatalf("row 1: %+v %v", sub, err)
		}
	})
}

func TestImportFatalErrors(t *testing.T) {
	s := openStore(t, testConfig("sqlite:"+t.TempDir()+"/r.db"))
	ctx := context.Background()
	for name, in := range map[string]string{
		"empty":          "",
		"unknown column": "imsi,ki,opc,home_region,colour\n",
		"missing column": "imsi,ki,home_region\n",
		"long line":      "imsi,ki,opc,home_region\n" + strings.Repeat("1", MaxImportLine+10) + "\n",
	} {
		if _, err := s.Import(ctx, strings.NewReader(in), ImportCSV); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	if _, err := s.Import(ctx, strings.NewReader(strings.Repeat("x", MaxImportLine+10)), ImportJSONLines); !errors.Is(err, ErrInvalid) {
		t.Errorf("long JSON line: %v", err)
	}
	if _, err := s.Import(ctx, strings.NewReader(""), ImportFormat(9)); !errors.Is(err, ErrInvalid) {
		t.Errorf("unknown format: %v", err)
	}
}

// A whole provisioning run — Provision, CSV and JSON-lines import with bad
// rows, AuthData reads, SQNs, serving, updates, errors logged by the caller
// — at debug level: the log holds no Ki or OPc, in hex (either case) or as
// raw bytes, and AuthData redacts itself through fmt and slog.
func TestNoKeyMaterialInLogs(t *testing.T) {
	eachBackend(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		var buf bytes.Buffer
		logger := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
		cfg := testConfig(dsn)
		cfg.Logger = logger
		s := openStore(t, cfg)
		var secrets [][]byte
		for i := 0; i < 3; i++ {
			sub, a := testSubscriber(400+i, topology.JP)
			secrets = append(secrets, append([]byte(nil), a.Ki[:]...), append([]byte(nil), a.OPc[:]...))
			if err := s.Provision(ctx, sub, a); err != nil {
				t.Fatal(err)
			}
			if err := s.Provision(ctx, sub, a); err != nil {
				logger.Error("provision failed", "err", err) // the caller logs our errors
			}
			got, err := s.AuthData(ctx, sub.IMSI)
			if err != nil {
				t.Fatal(err)
			}
			logger.Info("auth data", "auth", got, "fmt_v", fmt.Sprintf("%v %+v %#v %x %s %q", got, got, got, got, got, got))
			if _, err := s.NextSQNs(ctx, sub.IMSI, topology.JP, 3); err != nil {
				t.Fatal(err)
			}
			if _, err := s.UpdateServing(ctx, Serving{IMSI: sub.IMSI, Region: topology.JP, MMEHost: "mme"}); err != nil {
				t.Fatal(err)
			}
		}
		badKi := "0123456789abcdef0123456789abcde" // 31 digits: rejected
		csv := "imsi,msisdn,ki,opc,amf,apn,home_region\n" +
			"001010000000501,819000000501," + ki1 + "," + opc1 + ",8000,internet,JP\n" +
			"001010000000502,819000000502," + badKi + "," + opc1 + ",8000,internet,JP\n" +
			"001010000000503,819000000503," + ki1 + ",zz" + opc1[2:] + ",8000,internet,JP\n" +
			"001010000000504,819000000501," + ki1 + "," + opc1 + ",8000,internet,JP\n"
		rep, err := s.Import(ctx, strings.NewReader(csv), ImportCSV)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range rep.Errors {
			logger.Warn("import row", "line", e.Line, "err", e.Err)
		}
		jl := `{"imsi":"001010000000601","home_region":"JP","ki":"` + ki1 + `","opc":"` + opc1 + `"}` + "\n" +
			`{"imsi":"001010000000602","home_region":"JP","ki":"` + ki1 + `","opc":"` + opc1 + `","x":1}` + "\n" +
			`{"imsi":"001010000000603","home_region":"JP","ki":"` + ki1 + `","opc":"` + opc1 + "\n"
		rep, err = s.Import(ctx, strings.NewReader(jl), ImportJSONLines)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range rep.Errors {
			logger.Warn("import row", "line", e.Line, "err", e.Err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		k1, _ := hex.DecodeString(ki1)
		o1, _ := hex.DecodeString(opc1)
		secrets = append(secrets, k1, o1)
		out := buf.Bytes()
		if !bytes.Contains(out, []byte("redacted")) {
			t.Fatal("the log does not show the redacted AuthData: did the test log it?")
		}
		for _, sec := range secrets {
			h := hex.EncodeToString(sec)
			for _, needle := range [][]byte{[]byte(h), []byte(strings.ToUpper(h)), []byte(h[:16]), sec, sec[:8]} {
				if bytes.Contains(bytes.ToLower(out), bytes.ToLower(needle)) {
					t.Fatalf("key material %x appears in the log", needle)
				}
			}
		}
		for _, partial := range []string{badKi, badKi[:16], opc1[2:18]} {
			if bytes.Contains(out, []byte(partial)) {
				t.Fatalf("rejected key %q appears in the log", partial)
			}
		}
		if testing.Verbose() {
			io.Copy(io.Discard, &buf)
		}
	})
}

func TestAuthDataRedacts(t *testing.T) {
	var a AuthData
	for i := range a.Ki {
		a.Ki[i], a.OPc[i] = 0xab, 0xcd
	}
	for _, s := range []string{fmt.Sprint(a), fmt.Sprintf("%+v %#v %x %X %s %q %d", a, a, a, a, a, a, a), a.String(), a.GoString(), a.LogValue().String()} {
		if strings.Contains(strings.ToLower(s), "abab") || strings.Contains(strings.ToLower(s), "cdcd") || strings.Contains(s, "171") {
			t.Fatalf("AuthData printed its keys: %s", s)
		}
	}
	wrapped := struct{ A AuthData }{a}
	if s := fmt.Sprintf("%+v", wrapped); strings.Contains(s, "171") || strings.Contains(s, "ab") {
		t.Fatalf("AuthData inside a struct printed its keys: %s", s)
	}
}
