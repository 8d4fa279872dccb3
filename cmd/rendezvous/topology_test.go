package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/rendezvous-core/rendezvous/topology"
)

func runTopology(args ...string) (string, error) {
	cmd := newTopologyCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func TestTopologyRankJSON(t *testing.T) {
	tests := []struct {
		arg   string
		first topology.RegionID
	}{
		{"334", topology.US}, // Mexico
		{"334020", topology.US},
		{"26201", topology.DE},
		{"262", topology.DE},
		{"505", topology.AU},
		{"440", topology.JP},
		{"310260", topology.US},
	}
	for _, tt := range tests {
		t.Run(tt.arg, func(t *testing.T) {
			out, err := runTopology("rank", tt.arg, "-o", "json")
			if err != nil {
				t.Fatal(err)
			}
			var rows []struct {
				Region topology.RegionID `json:"region"`
				RTTMS  *float64          `json:"rtt_ms"`
				KM     *float64          `json:"km"`
			}
			if err := json.Unmarshal([]byte(out), &rows); err != nil {
				t.Fatalf("%v in %s", err, out)
			}
			if len(rows) != 4 || rows[0].Region != tt.first {
				t.Fatalf("rank %s = %s, want %s first", tt.arg, out, tt.first)
			}
			for i, r := range rows {
				if r.RTTMS == nil || r.KM == nil || *r.KM < 0 || *r.RTTMS < 0 {
					t.Errorf("row %d: %s", i, out)
				}
				if i > 0 && *r.RTTMS < *rows[i-1].RTTMS {
					t.Errorf("not nearest first: %s", out)
				}
			}
		})
	}
}

func TestTopologyText(t *testing.T) {
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"rank", "334"}, []string{"Mexico (MX)", "REGION", "RTT_MS", "US "}},
		{[]string{"mcc", "262"}, []string{"262", "Germany", "(DE)"}},
		{[]string{"mcc", "26201", "-o", "json"}, []string{`"alpha2": "DE"`}},
		{[]string{"regions"}, []string{"JP", "Tokyo", "Oregon", "Frankfurt", "Sydney"}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			out, err := runTopology(tt.args...)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

func TestTopologyUsageErrors(t *testing.T) {
	tests := [][]string{
		{"rank"},
		{"rank", "33x"},
		{"rank", "3340"},
		{"rank", "3340201"},
		{"rank", "999"}, // shared code: no location
		{"rank", "334", "extra"},
		{"rank", "334", "-o", "xml"},
		{"mcc", "abc"},
		{"mcc", "203"}, // unassigned
		{"regions", "x"},
	}
	for _, args := range tests {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			_, err := runTopology(args...)
			var ue usageError
			if !errors.As(err, &ue) {
				t.Fatalf("error %v (%T) is not a usageError", err, err)
			}
		})
	}
}
