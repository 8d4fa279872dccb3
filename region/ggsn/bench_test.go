package ggsn_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rendezvous-core/rendezvous/region/gtpc/gtpctest"
	"github.com/rendezvous-core/rendezvous/region/session/sessiontest"
)

// osmoConfig is peers.md §2.2's osmo-ggsn configuration on addr.
func osmoConfig(dir, addr string) string {
	return fmt.Sprintf(`log stderr
 logging filter all 1
 logging color 0
 logging level ggsn notice
 logging level lgtp notice
!
line vty
 no login
 bind %[2]s
ctrl
 bind %[2]s
!
ggsn ggsn0
 gtp state-dir %[1]s/state
 gtp bind-ip %[2]s
 apn internet
  gtpu-mode tun
  tun-device tun-rdvbench
  type-support v4
  ip prefix dynamic 198.19.0.0/16
  ip dns 0 198.51.100.53
  ip ifconfig 198.19.0.1/16
  no shutdown
 default-apn internet
 no shutdown ggsn
`, dir, addr)
}

type rates struct{ create, del, createdOK float64 }

// ratesFrom measures, for the GGSN at ggsn, Create and Delete PDP Context
// rates as peers.md §2.4 does: answers ÷ (first request → last answer).
func ratesFrom(b *testing.B, pcap, ggsn string) rates {
	lines, err := gtpctest.Tshark(pcap, "-Y", "ip.addr=="+ggsn+" && (gtp.message>=0x10 && gtp.message<=0x15)",
		"-T", "fields", "-e", "frame.time_epoch", "-e", "gtp.message", "-e", "gtp.cause")
	if err != nil {
		b.Fatal(err)
	}
	var first, last [2]float64
	var n [2]int
	ok := 0
	for _, l := range lines {
		f := strings.Split(l, "\t")
		if len(f) < 2 {
			continue
		}
		ts, _ := strconv.ParseFloat(f[0], 64)
		msg, _ := strconv.ParseUint(strings.TrimPrefix(f[1], "0x"), 16, 8)
		k := 0
		if msg >= 0x14 {
			k = 1
		}
		switch msg {
		case 0x10, 0x14:
			if first[k] == 0 {
				first[k] = ts
			}
		case 0x11, 0x15:
			n[k]++
			last[k] = ts
			if msg == 0x11 && len(f) > 2 && f[2] == "128" {
				ok++
			}
		}
	}
	r := rates{createdOK: float64(ok)}
	if last[0] > first[0] {
		r.create = float64(n[0]) / (last[0] - first[0])
	}
	if last[1] > first[1] {
		r.del = float64(n[1]) / (last[1] - first[1])
	}
	return r
}

// BenchmarkGGSNvsOsmoGGSN puts the same sgsnemu load (4 instances × 200
// contexts, in parallel) on our GGSN and on osmo-ggsn 1.9.0 in one run, in
// one namespace, and reports PDP contexts created and deleted per second
// for both and the ratios (ours ÷ osmo). Each side takes ~15–25 s
// (sgsnemu's coarse timers).
//
//	go test -run XXX -bench GGSNvsOsmo -benchtime 1x ./region/ggsn
func BenchmarkGGSNvsOsmoGGSN(b *testing.B) {
	requireTools(b, "sgsnemu", "osmo-ggsn", "dumpcap", "tshark")
	const inst, per = 4, 200
	ns, err := gtpctest.NewNetns("gbench")
	if err != nil {
		b.Fatal(err)
	}
	defer ns.Close()
	subs := sessiontest.NewSubscribers()
	for k := 1; k <= inst; k++ {
		first, _ := strconv.ParseUint(fmt.Sprintf("90170%d000000001", k), 10, 64)
		subs.AddRange(first, per, 10, "internet")
	}
	dir := b.TempDir()
	n := startNode(b, ns, "127.0.0.2:2123", filepath.Join(dir, "ours"), subs)
	defer n.close()
	if err := os.MkdirAll(filepath.Join(dir, "osmo", "state"), 0o755); err != nil {
		b.Fatal(err)
	}
	cfg := filepath.Join(dir, "osmo", "osmo-ggsn.cfg")
	os.WriteFile(cfg, []byte(osmoConfig(filepath.Join(dir, "osmo"), "127.0.0.3")), 0o644)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	osmo := ns.Command(ctx, dir, "osmo-ggsn", "-c", cfg)
	var osmoLog strings.Builder
	osmo.Stderr = &osmoLog
	if err := osmo.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { cancel(); osmo.Wait() }()
	time.Sleep(2 * time.Second)
	pcap := filepath.Join(dir, "bench.pcapng")
	capt, err := ns.StartCapture(pcap, "udp port 2123")
	if err != nil {
		b.Fatal(err)
	}
	load := func(ggsn string, base int) {
		var wg sync.WaitGroup
		for k := 1; k <= inst; k++ {
			sg := filepath.Join(dir, fmt.Sprintf("sg-%s-%d", ggsn, k))
			os.MkdirAll(sg, 0o755)
			wg.Add(1)
			go func() {
				defer wg.Done()
				c := ns.Command(context.Background(), sg, "sgsnemu", "-l", fmt.Sprintf("127.0.0.%d", base+k), "-r", ggsn,
					"--contexts", fmt.Sprint(per), "--timelimit", "1", "--apn", "internet",
					"--imsi", fmt.Sprintf("90170%d000000001", k), "--msisdn", fmt.Sprintf("4670%d000001", k))
				c.Stdout, c.Stderr = nil, nil
				if err := c.Run(); err != nil {
					if _, ok := err.(*exec.ExitError); !ok {
						b.Error(err)
					}
				}
			}()
		}
		wg.Wait()
	}
	b.ResetTimer()
	load("127.0.0.2", 10)
	load("127.0.0.3", 20)
	b.StopTimer()
	if err := capt.Stop(); err != nil {
		b.Fatal(err)
	}
	ours, theirs := ratesFrom(b, pcap, "127.0.0.2"), ratesFrom(b, pcap, "127.0.0.3")
	b.ReportMetric(ours.create, "ours-create/s")
	b.ReportMetric(ours.del, "ours-delete/s")
	b.ReportMetric(theirs.create, "osmo-create/s")
	b.ReportMetric(theirs.del, "osmo-delete/s")
	if theirs.create > 0 && theirs.del > 0 {
		b.ReportMetric(ours.create/theirs.create, "create-ratio")
		b.ReportMetric(ours.del/theirs.del, "delete-ratio")
	}
	b.ReportMetric(ours.createdOK, "ours-accepted")
	b.ReportMetric(theirs.createdOK, "osmo-accepted")
}
