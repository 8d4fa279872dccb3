package hss

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fiorix/go-diameter/v4/diam"
	"github.com/fiorix/go-diameter/v4/diam/avp"
	"github.com/fiorix/go-diameter/v4/diam/datatype"
	"github.com/fiorix/go-diameter/v4/diam/dict"
)

// capture runs dumpcap on lo for one TCP port until stop is called; stop
// returns the pcapng path and dumpcap's own report (packets dropped).
func capture(t *testing.T, port uint16) (stop func() (string, string)) {
	t.Helper()
	dumpcap, err := exec.LookPath("dumpcap")
	requireTool(t, "dumpcap (wireshark) for the wire check", err)
	pcap := filepath.Join(t.TempDir(), "s6a.pcapng")
	cmd := exec.Command(dumpcap, "-i", "lo", "-f", fmt.Sprintf("tcp port %d", port), "-w", pcap)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		requireTool(t, "dumpcap start", err)
	}
	ready := make(chan struct{})
	var log strings.Builder
	logDone := make(chan struct{})
	go func() {
		defer close(logDone)
		sc := bufio.NewScanner(stderr)
		once := false
		for sc.Scan() {
			log.WriteString(sc.Text() + "\n")
			if !once && strings.Contains(sc.Text(), "Capturing on") {
				once = true
				close(ready)
			}
		}
		if !once {
			close(ready)
		}
	}()
	select {
	case <-ready:
	case <-time.After(hang):
		cmd.Process.Kill()
		t.Fatal("dumpcap did not start")
	}
	// "Capturing on" comes slightly before the filter is live
	// (notes/peers.md §3); the test checks afterwards that every SYN is in.
	time.Sleep(time.Second)
	stopped := false
	stop = func() (string, string) {
		if !stopped {
			stopped = true
			// Let the last segments reach the capture, then flush.
			time.Sleep(200 * time.Millisecond)
			cmd.Process.Signal(os.Interrupt)
			<-logDone
			cmd.Wait()
		}
		return pcap, log.String()
	}
	t.Cleanup(func() { stop() })
	return stop
}

func tshark(t *testing.T, args ...string) string {
	t.Helper()
	bin, err := exec.LookPath("tshark")
	requireTool(t, "tshark for the wire check", err)
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("tshark %v: %v\n%s", args, err, out)
	}
	// "Running as user root …" is a harmless warning on stderr.
	var lines []string
	for _, l := range strings.Split(string(out), "\n") {
		if l != "" && !strings.Contains(l, "Running as user") && !strings.Contains(l, "dangerous") {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "\n")
}

// TestWireDecodesCleanly captures a whole exchange (CER, AIR, resync, ULR,
// CLR to the old MME, PUR, NOR, IDR, CLR withdrawal, DWR both ways, error
// answers, DPR both ways) and has tshark decode it: no malformed packet,
// no expert error or warning, every request answered.
func TestWireDecodesCleanly(t *testing.T) {
	st := openStore(t)
	sub, u := provision(t, st, nil)
	s := startHSS(t, st, func(c *Config) { c.WatchdogInterval = 300 * time.Millisecond })
	port := s.Addrs()[0].Port()
	stop := capture(t, port)

	ctx := context.Background()
	visited := plmnOf("26201")
	m1 := dialMME(t, s.Addrs()[0], "mme-a.visited.example")
	expectResult(t, m1.roundTrip(m1.air(sub.IMSI, visited, 2, nil)), codeSuccess, false)
	// Force a resynchronisation.
	for i := range u.seqMS {
		u.seqMS[i] = 1 << 20
	}
	u.highest = 1<<25 | 1
	a := m1.roundTrip(m1.air(sub.IMSI, visited, 1, nil))
	v := eutranVectors(a)[0]
	_, _, _, auts, err := u.authenticate(v.rand, v.autn)
	if err == nil {
		t.Fatal("expected a sync failure")
	}
	expectResult(t, m1.roundTrip(m1.air(sub.IMSI, visited, 1, append(append([]byte{}, v.rand...), auts...))), codeSuccess, false)
	expectResult(t, m1.roundTrip(m1.ulr(sub.IMSI, visited, ulrS6aIndicator|ulrInitialAttach, 1004)), codeSuccess, false)
	expectResult(t, m1.roundTrip(m1.air("001019999999999", visited, 1, nil)), expUserUnknown, true)
	m1.waitRequest(cmdDWR) // our watchdog
	dwr := diam.NewRequest(diam.DeviceWatchdog, 0, dict.Default)
	dwr.NewAVP(avp.OriginHost, fM, 0, datatype.DiameterIdentity(m1.host))
	dwr.NewAVP(avp.OriginRealm, fM, 0, datatype.DiameterIdentity(m1.realm))
	expectResult(t, m1.roundTrip(dwr), codeSuccess, false)

	m2 := dialMME(t, s.Addrs()[0], "mme-b.visited.example")
	expectResult(t, m2.roundTrip(m2.ulr(sub.IMSI, visited, ulrS6aIndicator, 1004)), codeSuccess, false)
	m1.waitRequest(cmdCLR)
	pur := m1.newReq(cmdPUR, sub.IMSI)
	pur.NewAVP(avpPURFlags, fV, vendor3GPP, datatype.Unsigned32(1))
	expectResult(t, m1.roundTrip(pur), codeSuccess, false)
	expectResult(t, m2.roundTrip(m2.newReq(cmdNOR, sub.IMSI)), codeSuccess, false)
	if err := s.InsertSubscriberData(ctx, sub.IMSI); err != nil {
		t.Fatal(err)
	}
	m2.waitRequest(cmdIDR)
	if err := s.CancelLocation(ctx, sub.IMSI, SubscriptionWithdrawal, true); err != nil {
		t.Fatal(err)
	}
	m2.waitRequest(cmdCLR)
	dpr := diam.NewRequest(diam.DisconnectPeer, 0, dict.Default)
	dpr.NewAVP(avp.OriginHost, fM, 0, datatype.DiameterIdentity(m2.host))
	dpr.NewAVP(avp.OriginRealm, fM, 0, datatype.DiameterIdentity(m2.realm))
	dpr.NewAVP(avp.DisconnectCause, fM, 0, datatype.Enumerated(2))
	expectResult(t, m2.roundTrip(dpr), codeSuccess, false)
	m2.waitClosed()
	m1.answerDWR.Store(true)
	if err := s.Close(); err != nil { // DPR to m1
		t.Fatal(err)
	}
	m1.waitClosed()
	pcap, dumpcapLog := stop()
	if os.Getenv("HSS_KEEP_PCAP") != "" {
		exec.Command("cp", pcap, os.Getenv("HSS_KEEP_PCAP")).Run()
	}

	dec := fmt.Sprintf("tcp.port==%d,diameter", port)
	if syns := tshark(t, "-r", pcap, "-Y", "tcp.flags.syn==1 && tcp.flags.ack==0", "-T", "fields", "-e", "frame.number"); len(strings.Fields(syns)) != 2 {
		t.Fatalf("capture incomplete: %d connection openings, want 2", len(strings.Fields(syns)))
	}
	// TCP's own notes on bare segments (a FIN retransmitted while the
	// peer lingers, D-SACK) are not about our bytes; any warning on a
	// Diameter frame is.
	if bad := tshark(t, "-r", pcap, "-d", dec, "-Y", `_ws.malformed || _ws.expert.severity >= "error" || (diameter && _ws.expert.severity >= "warning")`,
		"-T", "fields", "-e", "frame.number", "-e", "_ws.col.Info", "-e", "_ws.expert.message"); bad != "" {
		t.Fatalf("tshark found problems:\n%s\n%s", bad, tshark(t, "-r", pcap, "-d", dec, "-q", "-z", "expert"))
	}
	if un := tshark(t, "-2", "-r", pcap, "-d", dec, "-Y", "diameter.flags.request==1 && !diameter.answer_in",
		"-T", "fields", "-e", "frame.number", "-e", "diameter.cmd.code"); un != "" {
		t.Fatalf("unanswered requests:\n%s\ndumpcap: %s\n%s", un, dumpcapLog, tshark(t, "-r", pcap, "-d", dec))
	}
	cmds := tshark(t, "-r", pcap, "-d", dec, "-Y", "diameter", "-T", "fields", "-e", "diameter.cmd.code", "-e", "diameter.flags.request")
	seen := map[string]int{}
	for _, l := range strings.Split(cmds, "\n") {
		for _, c := range strings.Split(strings.Fields(l + " x")[0], ",") {
			seen[c]++
		}
	}
	for _, c := range []string{"257", "280", "282", "316", "317", "318", "319", "321", "323"} {
		if seen[c] < 2 {
			t.Fatalf("command %s seen %d times on the wire (want request and answer): %v", c, seen[c], seen)
		}
	}
	if testing.Verbose() {
		t.Logf("wire: %v\n%s", seen, tshark(t, "-r", pcap, "-d", dec, "-Y", "diameter"))
	}
}
