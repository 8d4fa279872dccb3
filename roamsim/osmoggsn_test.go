package roamsim

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rendezvous-core/rendezvous/topology"
)

// TestSGSNAgainstOsmoGGSN: 3G devices create PDP contexts at osmo-ggsn (an
// independent GTPv1 implementation, notes/peers.md §2) and ping its tun
// address through GTP-U: the kernel answers only if our IPv4 and ICMP
// checksums are right.
func TestSGSNAgainstOsmoGGSN(t *testing.T) {
	if testing.Short() {
		t.Skip("interop with an external peer; skipped in -short")
	}
	bin, err := exec.LookPath("osmo-ggsn")
	if err != nil {
		skipOrFail(t, "osmo-ggsn not installed (apt-get install osmo-ggsn)")
	}
	if os.Geteuid() != 0 {
		skipOrFail(t, "osmo-ggsn needs root for its tun device")
	}
	const (
		ggsnIP = "127.0.50.70"
		tunDev = "rsimggsn0"
		tunIP  = "100.127.50.1"
	)
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "state"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`log stderr
 logging filter all 1
 logging color 0
 logging print category 1
 logging level ggsn notice
 logging level lgtp notice
 logging level tun notice
!
line vty
 no login
 bind %[1]s
ctrl
 bind %[1]s
!
ggsn ggsn0
 gtp state-dir %[2]s/state
 gtp bind-ip %[1]s
 apn internet
  gtpu-mode tun
  tun-device %[3]s
  type-support v4
  ip prefix dynamic 100.127.50.0/24
  ip dns 0 192.0.2.53
  ip ifconfig %[4]s/24
  no shutdown
 default-apn internet
 no shutdown ggsn
`, ggsnIP, dir, tunDev, tunIP)
	cfgFile := filepath.Join(dir, "osmo-ggsn.cfg")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	cmd := exec.Command(bin, "-c", cfgFile)
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		skipOrFail(t, "start osmo-ggsn: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	}()
	// Wait for the tun address (osmo-ggsn has started).
	for i := 0; ; i++ {
		out, _ := exec.Command("ip", "-4", "addr", "show", "dev", tunDev).CombinedOutput()
		if strings.Contains(string(out), tunIP) {
			break
		}
		select {
		case err := <-exited:
			skipOrFail(t, "osmo-ggsn exited: %v\n%s", err, log.String())
		default:
		}
		if i == 100 {
			skipOrFail(t, "osmo-ggsn did not bring up %s:\n%s", tunDev, log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}

	k := ts1Keys(t)
	devs, err := Spread(4, DefaultCountries(), Template{IMSIPrefix: "90170", FirstIndex: 1, MSISDNPrefix: "4670",
		Ki: k.Ki, OPc: k.OPc, AMF: 0x8000, APN: "internet", RAT: RAT3G})
	if err != nil {
		t.Fatal(err)
	}
	r := runSim(t, Config{
		Devices:    devs,
		GTPC:       mustAddrPort("127.0.50.71:0"),
		GGSN:       mustAddrPort(ggsnIP + ":2123"),
		PGWRegions: map[netipAddr]topology.RegionID{mustAddr(ggsnIP): topology.DE},
		Target:     mustAddr(tunIP),
		Probes:     3,
		AttachRate: -1,
		Logger:     testLogger(t),
	}, context.Background())
	for _, d := range r.Devices {
		if d.Attaches != 1 || len(d.Failures) != 0 || !strings.HasPrefix(d.UE, "100.127.50.") || d.Region != topology.DE {
			t.Errorf("%s: %+v\nosmo-ggsn log:\n%s", d.IMSI, d, log.String())
			continue
		}
		if d.Data == nil || d.Data.Received == 0 {
			t.Errorf("%s: no echo reply through osmo-ggsn: %+v", d.IMSI, d.Data)
		}
	}
}
