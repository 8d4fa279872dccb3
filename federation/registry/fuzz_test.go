package registry

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// The import parsers and the KEK file parser take untrusted input: they
// must never panic, and every row they accept is valid.

func fuzzImporter(t *testing.T) *importer {
	cfg, err := testConfig("sqlite:/nonexistent").validate()
	if err != nil {
		t.Fatal(err)
	}
	s := &Store{cfg: cfg}
	var rep ImportReport
	imp := &importer{s: s, rep: &rep}
	imp.sink = func(_ context.Context, line int, sub Subscriber, a AuthData) error {
		if line < 1 {
			t.Fatalf("row at line %d", line)
		}
		if err := s.validate(&sub); err == nil {
			_ = validateAuth(sub.IMSI, a)
		}
		return nil
	}
	return imp
}

func FuzzImportCSV(f *testing.F) {
	f.Add("imsi,msisdn,ki,opc,amf,apn,home_region\n001010000000001,8190," + ki1 + "," + opc1 + ",8000,internet,JP\n")
	f.Add("imsi,ki,opc,home_region\n\"0010\"\"1\",x,y,JP\n1,2\n")
	f.Add("imsi,ki,opc,home_region\n001010000000001," + ki1 + "," + opc1 + ",AU\r\n\"unterminated")
	f.Fuzz(func(t *testing.T, in string) {
		imp := fuzzImporter(t)
		_ = imp.csv(context.Background(), &lineGuard{r: strings.NewReader(in), max: MaxImportLine})
		if imp.rep.Failed > imp.rep.Rows {
			t.Fatalf("report %+v", imp.rep)
		}
	})
}

func FuzzImportJSONLines(f *testing.F) {
	f.Add(`{"imsi":"001010000000101","home_region":"US","ki":"` + ki1 + `","opc":"` + opc1 + `"}` + "\n\n{")
	f.Add(`{"apns":[{"name":"a","qci":300}]}`)
	f.Add("{} {}\n[1]\n\"x\"")
	f.Fuzz(func(t *testing.T, in string) {
		imp := fuzzImporter(t)
		_ = imp.jsonl(context.Background(), &lineGuard{r: strings.NewReader(in), max: MaxImportLine})
		if imp.rep.Failed > imp.rep.Rows {
			t.Fatalf("report %+v", imp.rep)
		}
	})
}

func FuzzKEKFile(f *testing.F) {
	f.Add("# keys\nk2 " + strings.Repeat("ab", 32) + "\nk1 " + strings.Repeat("01", 32) + "\n")
	f.Add("k1 zz\n")
	f.Add("k1 " + strings.Repeat("ab", 32) + "\nk1 " + strings.Repeat("ab", 32))
	f.Fuzz(func(t *testing.T, in string) {
		kr, err := parseKEKs(strings.NewReader(in), "fuzz")
		if err != nil {
			if bytes.Contains([]byte(err.Error()), []byte(strings.Repeat("ab", 8))) {
				t.Fatalf("error quotes key material: %v", err)
			}
			return
		}
		sealed, err := kr.seal("ki", "001010000000001", make([]byte, 16))
		if err != nil {
			t.Fatal(err)
		}
		var out [16]byte
		if err := kr.open(kr.primary, "ki", "001010000000001", sealed, out[:]); err != nil {
			t.Fatal(err)
		}
		if err := kr.open(kr.primary, "ki", "001010000000002", sealed, out[:]); err == nil {
			t.Fatal("sealed Ki opened under another IMSI")
		}
	})
}
