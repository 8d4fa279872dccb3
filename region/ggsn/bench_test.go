package ggsn_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
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

type rates struct{ create, del, accepted float64 }

// burstRates measures each sgsnemu burst (one per peer address) at the GGSN
// ggsn as peers.md §2.4 does: answers ÷ (first request → last answer), and
// returns the medians over the bursts and the accepted creates in total.
func burstRates(b *testing.B, pcap, ggsn string) rates {
	lines, err := gtpctest.Tshark(pcap, "-Y", "ip.addr=="+ggsn+" && (gtp.message>=0x10 && gtp.message<=0x15)",
		"-T", "fields", "-e", "frame.time_epoch", "-e", "gtp.message", "-e", "gtp.cause", "-e", "ip.src", "-e", "ip.dst")
	if err != nil {
		b.Fatal(err)
	}
	type span struct {
		first, last float64
		n           int
	}
	bursts := map[string]*[2]span{}
	accepted := 0
	for _, l := range lines {
		f := strings.Split(l, "\t")
		if len(f) < 5 {
			continue
		}
		ts, _ := strconv.ParseFloat(f[0], 64)
		msg, _ := strconv.ParseUint(strings.TrimPrefix(f[1], "0x"), 16, 8)
		k := 0
		if msg >= 0x14 {
			k = 1
		}
		peer := f[3]
		if peer == ggsn {
			peer = f[4]
		}
		sp := bursts[peer]
		if sp == nil {
			sp = &[2]span{}
			bursts[peer] = sp
		}
		switch msg {
		case 0x10, 0x14:
			if sp[k].first == 0 {
				sp[k].first = ts
			}
		case 0x11, 0x15:
			sp[k].n++
			sp[k].last = ts
			if msg == 0x11 && f[2] == "128" {
				accepted++
			}
		}
	}
	var cr, dr []float64
	for _, sp := range bursts {
		if sp[0].last > sp[0].first {
			cr = append(cr, float64(sp[0].n)/(sp[0].last-sp[0].first))
		}
		if sp[1].last > sp[1].first {
			dr = append(dr, float64(sp[1].n)/(sp[1].last-sp[1].first))
		}
	}
	return rates{create: median(cr), del: median(dr), accepted: float64(accepted)}
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	sort.Float64s(v)
	return v[len(v)/2]
}

// BenchmarkGGSNvsOsmoGGSN puts the same sgsnemu load on our GGSN and on
// osmo-ggsn 1.9.0 in one run, in one namespace: 3 rounds, each one sgsnemu
// burst of 200 contexts to ours, then one to osmo-ggsn (200 per burst: with
// the default net.core.rmem_default sgsnemu's and osmo-ggsn's sockets
// overflow above that, peers.md §2.4; we do not change the global sysctl on
// a shared machine). It reports the median PDP contexts created and deleted
// per second per burst, for both, and the ratios (ours ÷ osmo). Each burst
// takes 10–20 s (sgsnemu's coarse timers).
//
//	go test -run XXX -bench GGSNvsOsmo -benchtime 1x ./region/ggsn
func BenchmarkGGSNvsOsmoGGSN(b *testing.B) {
	requireTools(b, "sgsnemu", "osmo-ggsn", "dumpcap", "tshark")
	const inst, per = 3, 200
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
	burst := func(ggsn string, local string, k int) {
		sg := filepath.Join(dir, "sg-"+local)
		os.MkdirAll(sg, 0o755)
		c := ns.Command(context.Background(), sg, "sgsnemu", "-l", local, "-r", ggsn,
			"--contexts", fmt.Sprint(per), "--timelimit", "1", "--apn", "internet",
			"--imsi", fmt.Sprintf("90170%d000000001", k), "--msisdn", fmt.Sprintf("4670%d000001", k))
		if err := c.Run(); err != nil {
			if _, ok := err.(*exec.ExitError); !ok {
				b.Error(err)
			}
		}
	}
	b.ResetTimer()
	for k := 1; k <= inst; k++ {
		burst("127.0.0.2", fmt.Sprintf("127.0.0.%d", 10+k), k)
		burst("127.0.0.3", fmt.Sprintf("127.0.0.%d", 20+k), k)
	}
	b.StopTimer()
	if err := capt.Stop(); err != nil {
		b.Fatal(err)
	}
	ours, theirs := burstRates(b, pcap, "127.0.0.2"), burstRates(b, pcap, "127.0.0.3")
	b.ReportMetric(ours.create, "ours-create/s")
	b.ReportMetric(ours.del, "ours-delete/s")
	b.ReportMetric(theirs.create, "osmo-create/s")
	b.ReportMetric(theirs.del, "osmo-delete/s")
	if theirs.create > 0 && theirs.del > 0 {
		b.ReportMetric(ours.create/theirs.create, "create-ratio")
		b.ReportMetric(ours.del/theirs.del, "delete-ratio")
	}
	b.ReportMetric(ours.accepted, "ours-accepted")
	b.ReportMetric(theirs.accepted, "osmo-accepted")
}
