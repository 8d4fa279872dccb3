package main

import (
	"bytes"
	"io"
	"os"
	"testing"
)

// TestReproducible regenerates the table from the committed sources and
// compares it with the committed topology/mcc.tsv: the embedded file is the
// generator's output, byte for byte (run `go generate ./topology` if not).
func TestReproducible(t *testing.T) {
	var rep bytes.Buffer
	got, err := generate("source", &rep)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct {
		path string
		data []byte
	}{{"../../mcc.tsv", got}, {"report.txt", rep.Bytes()}} {
		want, err := os.ReadFile(f.path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(f.data, want) {
			t.Errorf("%s differs from the generator's output: run `go generate ./topology`", f.path)
		}
	}
	again, _ := generate("source", io.Discard)
	if !bytes.Equal(got, again) {
		t.Fatal("generator output is not deterministic")
	}
}

func TestParseISO6709(t *testing.T) {
	tests := []struct {
		in       string
		lat, lon float64
		ok       bool
	}{
		{"+3541+13946", 35 + 41.0/60, 139 + 46.0/60, true},
		{"-3352+15113", -(33 + 52.0/60), 151 + 13.0/60, true},
		{"+484531-0913718", 48 + 45.0/60 + 31.0/3600, -(91 + 37.0/60 + 18.0/3600), true},
		{"+3541", 0, 0, false},
		{"+35x1+13946", 0, 0, false},
	}
	for _, tt := range tests {
		lat, lon, err := parseISO6709(tt.in)
		if (err == nil) != tt.ok || (tt.ok && (abs(lat-tt.lat) > 1e-9 || abs(lon-tt.lon) > 1e-9)) {
			t.Errorf("parseISO6709(%q) = %g, %g, %v", tt.in, lat, lon, err)
		}
	}
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}
