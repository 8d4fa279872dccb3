package roamsim

import (
	"context"
	"runtime"
	"testing"
)

// BenchmarkOneShot attaches b.N devices (AIR with USIM verification, ULR,
// CSR, one probe, DSR) against the in-test HSS and PGW on loopback and
// reports attaches per second. go test -bench OneShot -benchtime 2000x.
func BenchmarkOneShot(b *testing.B) {
	devs := testDevices(b, b.N)
	l := newLab(b, 120, devs)
	l.cfg.Probes = 1
	l.cfg.Logger = testLogger(nil)
	before := runtime.NumGoroutine()
	b.ResetTimer()
	s, err := New(l.cfg)
	if err != nil {
		b.Fatal(err)
	}
	r, err := s.Run(context.Background())
	if err != nil {
		b.Skip(err)
	}
	b.StopTimer()
	if r.Totals.EverOK != b.N {
		b.Fatalf("%d of %d attached: %+v", r.Totals.EverOK, b.N, r.Totals.Causes)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "attaches/s")
	b.ReportMetric(r.Totals.AttachP50, "attach-p50-ms")
	if after := runtime.NumGoroutine(); after > before+8 {
		b.Errorf("goroutines: %d before Run, %d after", before, after)
	}
}
