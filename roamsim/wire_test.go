package roamsim

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestWireCheckedByTshark captures a one-shot run (S6a, S8 GTPv2-C, GTP-U)
// and has tshark check it: no malformed packets or dissector errors, GTP
// lengths consistent, every request answered (notes/peers.md §3).
func TestWireCheckedByTshark(t *testing.T) {
	if testing.Short() {
		t.Skip("interop with an external peer; skipped in -short")
	}
	for _, tool := range []string{"dumpcap", "tshark"} {
		if _, err := exec.LookPath(tool); err != nil {
			skipOrFail(t, "%s not installed (apt-get install tshark)", tool)
		}
	}
	pcap := filepath.Join(t.TempDir(), "roamsim.pcapng")
	capt := exec.Command("dumpcap", "-q", "-i", "lo", "-f",
		"net 127.0.50.96/28 and (udp port 2123 or udp port 2152 or tcp port 3868)", "-w", pcap)
	stderr, _ := capt.StderrPipe()
	if err := capt.Start(); err != nil {
		skipOrFail(t, "dumpcap: %v", err)
	}
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		ok := false
		for sc.Scan() {
			if !ok && strings.Contains(sc.Text(), "Capturing on") {
				ok = true
				ready <- true
			}
		}
		if !ok {
			ready <- false
		}
	}()
	if !<-ready {
		capt.Wait()
		skipOrFail(t, "dumpcap could not capture on lo")
	}
	time.Sleep(time.Second) // dumpcap misses the first packets otherwise (peers.md §3)

	devs := testDevices(t, 8)
	pgwIP := mustAddr("127.0.50.97")
	hss := startHSS(t, "127.0.50.96:3868", pgwIP, "topon.s5.pgw1.de.node.epc.test.example")
	pgw := startPGW(t, pgwIP)
	_ = pgw
	for _, d := range devs {
		hss.add(d, 0)
	}
	runSim(t, Config{Devices: devs, HSS: []string{hss.addr}, GTPC: mustAddrPort("127.0.50.98:0"),
		Target: mustAddr("198.51.100.1"), ModifyBearer: true, AttachRate: -1, Logger: testLogger(t)}, context.Background())

	time.Sleep(time.Second)
	capt.Process.Signal(interruptSignal)
	capt.Wait()

	check := func(name string, args ...string) {
		t.Helper()
		out, err := exec.Command("tshark", append([]string{"-r", pcap}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("tshark %s: %v\n%s", name, err, out)
		}
		var lines []string
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if l != "" && !strings.Contains(l, "Running as user") {
				lines = append(lines, l)
			}
		}
		if len(lines) > 0 {
			t.Errorf("%s: %d packets:\n%s", name, len(lines), strings.Join(lines, "\n"))
		}
	}
	count := func(filter string) int {
		out, _ := exec.Command("tshark", "-r", pcap, "-Y", filter, "-T", "fields", "-e", "frame.number").Output()
		return len(strings.Fields(string(out)))
	}
	// per device: AIR/AIA, ULR/ULA, CSR/CSResp, MBR/MBResp, DSR/DSResp,
	// and 3 probes with their replies.
	if d, g, u := count("diameter.cmd.code == 318 || diameter.cmd.code == 316"), count("gtpv2"), count("gtp.message == 0xff"); d < 8*4 || g < 8*6 || u < 8*6 {
		t.Fatalf("decoded %d S6a, %d GTPv2, %d G-PDU packets", d, g, u)
	}
	check("malformed", "-Y", `_ws.malformed || _ws.expert.severity >= "error"`,
		"-T", "fields", "-e", "frame.number", "-e", "_ws.col.Protocol", "-e", "_ws.expert.message")
	check("gtpv2 length", "-Y", "gtpv2 && udp.length != gtpv2.msg_length + 12")
	check("gtp length", "-Y", "gtp && udp.length != gtp.length + 16")
	check("unanswered CSR", "-2", "-Y", "gtpv2.message_type==32 && !gtpv2.response_in")
	check("unanswered S6a", "-2", "-Y", "diameter.flags.request==1 && diameter.cmd.code != 280 && !diameter.answer_in")
}

var interruptSignal = os.Interrupt
