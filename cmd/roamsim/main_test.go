package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func execute(args ...string) (string, error) {
	cmd := newRootCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"--rat", "5g"},
		{"--countries", "XX"},
		{"--ki", "00"},
		{"--target", "::1"},
		{"--pgw-region", "1.2.3.4"},
		{"-o", "yaml"},
		{"--gtpc", "nonsense"},
		{"--subscribers", "/nonexistent/subs.csv"},
	} {
		_, err := execute(args...)
		var ue usageError
		if !errors.As(err, &ue) {
			t.Errorf("%v: err %v, want a usage error", args, err)
		}
	}
}

func TestListCountries(t *testing.T) {
	out, err := execute("--list-countries")
	if err != nil || !strings.Contains(out, "BR") || !strings.Contains(out, "310260") {
		t.Fatalf("%v\n%s", err, out)
	}
}

func TestBuildConfigFromCSV(t *testing.T) {
	f := filepath.Join(t.TempDir(), "subs.csv")
	csv := "imsi,msisdn,ki,opc,amf,apn,home_region\n" +
		"001010000000001,4470001,465b5ce8b199b49faa5f0a2ee238a6bc,cd63cb71954a9f4e48a5994e37a02baf,8000,iot,DE\n" +
		"001010000000002,4470002,465b5ce8b199b49faa5f0a2ee238a6bc,cd63cb71954a9f4e48a5994e37a02baf,8000,iot,JP\n"
	if err := os.WriteFile(f, []byte(csv), 0o600); err != nil {
		t.Fatal(err)
	}
	o := options{subscribers: f, countries: "BR,ZA", gtpc: "127.0.50.99", output: "json", rat: "4g",
		pgwRegions: []string{"127.0.3.1=de"}, hss: []string{"127.0.3.1:3868"}, target: "198.18.0.2"}
	cfg, err := buildConfig(o, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Devices) != 2 || cfg.Devices[1].Visited.MCC != "655" || cfg.GTPC.Port() != 2123 ||
		cfg.PGWRegions[cfg.GTPC.Addr()] != "" || len(cfg.PGWRegions) != 1 {
		t.Fatalf("%+v", cfg)
	}
}
