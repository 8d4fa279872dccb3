package breakout

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// BenchmarkFastPath pushes packets through a real breakout (real sockets,
// real TUN) in lock-step batches, so nothing is lost and allocs/op counts
// every allocation of the whole process per packet: it must be 0.
//
//	go test -run XXX -bench FastPath -benchtime=2s ./breakout/
func BenchmarkFastPath(b *testing.B) {
	requireRoot(b)
	ns := newNS(b, "fp")
	ns.ip(b, "route", "add", "blackhole", "198.51.100.0/24")
	bo, err := New(Config{
		Name: "fp", Listen: netip.MustParseAddrPort("127.0.30.1:2152"), NetNS: ns.path(), Workers: 1,
		SocketBuffer: 4 << 20, // holds every packet in flight: the lock-step loop must lose none
		TUNName:      "rdvbo-fp0", Pools: []netip.Prefix{netip.MustParsePrefix("10.45.0.0/16")},
		TUNAddr: netip.MustParsePrefix("10.45.0.1/32"), NoNAT: true,
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { bo.Close() })
	ue := netip.MustParseAddr("10.45.0.2")
	peer := netip.MustParseAddrPort("127.0.30.2:2152")
	if err := bo.Install(Tunnel{LocalTEID: 0x1001, PeerTEID: 0x2001, Peer: peer, UE: ue}); err != nil {
		b.Fatal(err)
	}
	peerConn := ns.listenUDP(b, peer.String())
	prc, _ := peerConn.SyscallConn()
	setBuf(prc)
	var inject *net.UDPConn
	ns.do(b, func() (err error) {
		inject, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(10, 45, 0, 1)})
		return err
	})
	b.Cleanup(func() { inject.Close() })
	irc, _ := inject.SyscallConn()
	// At most window packets are in flight (socket buffer and TUN queue
	// hold them all), so nothing is lost and every packet is accounted for.
	const batch, window = 64, 256
	for _, size := range []int{64, 1400} {
		b.Run(fmt.Sprintf("uplink/%d", size), func(b *testing.B) {
			tx := newMmsgBatch(prc, batch, 0, 0)
			pkt := gpdu(b, 0x1001, ipv4UDP(ue, netip.MustParseAddr("198.51.100.1"), size-28))
			to := makeSockaddr(bo.LocalAddr())
			base := upPackets(bo)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			for sent := 0; sent < b.N; {
				spinUntil(b, func() bool { return uint64(sent)-(upPackets(bo)-base) <= window-batch }, func() string {
					return fmt.Sprintf("uplink: packets lost: %+v", bo.Stats().Dropped)
				})
				n := min(batch, b.N-sent)
				for i := 0; i < n; i++ {
					tx.queue(pkt, &to)
				}
				tx.flush()
				sent += n
			}
			spinUntil(b, func() bool { return upPackets(bo)-base >= uint64(b.N) }, func() string {
				return fmt.Sprintf("uplink: %d of %d packets arrived (lost: %+v)", upPackets(bo)-base, b.N, bo.Stats().Dropped)
			})
		})
		b.Run(fmt.Sprintf("downlink/%d", size), func(b *testing.B) {
			tx := newMmsgBatch(irc, batch, 0, 0)
			rx := newMmsgBatch(prc, batch, 2048, 0)
			payload := make([]byte, size-28)
			to := makeSockaddr(netip.AddrPortFrom(ue, 9))
			var got atomic.Int64
			done := make(chan struct{})
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			var rerr error
			go func() {
				defer close(done)
				for got.Load() < int64(b.N) {
					peerConn.SetReadDeadline(time.Now().Add(5 * time.Second))
					k, err := rx.recv()
					if err != nil {
						rerr = err
						got.Store(int64(b.N) + window) // unblock the sender
						return
					}
					got.Add(int64(k))
				}
			}()
			for sent := 0; sent < b.N; {
				for int64(sent)-got.Load() > window-batch {
					runtime.Gosched()
				}
				n := min(batch, b.N-sent)
				for i := 0; i < n; i++ {
					tx.queue(payload, &to)
				}
				tx.flush()
				sent += n
			}
			<-done
			if rerr != nil {
				b.Fatalf("downlink: %v after %d of %d packets (lost)", rerr, got.Load(), b.N)
			}
		})
	}
}

// spinUntil yields until cond holds; it fails after 5 s without progress
// (a lost packet), reading the clock only every 4096 spins.
func spinUntil(b *testing.B, cond func() bool, lost func() string) {
	var deadline time.Time
	for i := 0; !cond(); i++ {
		if i%4096 == 0 {
			if deadline.IsZero() {
				deadline = time.Now().Add(5 * time.Second)
			} else if time.Now().After(deadline) {
				b.Fatal(lost())
			}
		}
		runtime.Gosched()
	}
}

// upPackets sums the uplink counters without allocating.
func upPackets(bo *Breakout) uint64 {
	var v uint64
	for _, s := range bo.stats {
		v += s.c[statUpPackets].Load()
	}
	return v
}

// BenchmarkSideBySide measures, in one run and under the same offered load
// from the same sender process, uplink and downlink packets/s and
// packets per CPU-second at 64 and 1400 octets for: our breakout (1
// worker), osmo-ggsn 1.9's userspace GTP-U (gtpu-mode tun), and the raw TUN
// write limit (a loop writing the same packets into a TUN device). The
// system under test runs on CPU 1, sender and sink on CPU 0. Run it alone:
//
//	go test -run XXX -bench SideBySide -benchtime=1x ./breakout/
func BenchmarkSideBySide(b *testing.B) {
	requireRoot(b, "osmo-ggsn", "sgsnemu", "taskset")
	if runtime.NumCPU() < 2 {
		b.Skip("needs 2 CPUs")
	}
	window := 2 * time.Second
	if v := os.Getenv("RDVBO_WINDOW"); v != "" {
		window, _ = time.ParseDuration(v)
	}
	ns := newNS(b, "sbs")
	ns.ip(b, "route", "add", "blackhole", "198.51.100.0/24")

	// Pin this process (our breakout, the raw TUN writer) to CPU 1, with
	// one P: a second P would only spin in the netpoller on the same CPU.
	pinAllThreads(b, 1)
	procs := runtime.GOMAXPROCS(1)
	b.Cleanup(func() { runtime.GOMAXPROCS(procs); pinAllThreads(b, -1) })

	// osmo-ggsn per notes/peers.md §2.2, one PDP context created by
	// sgsnemu, which is then killed so that the context stays and the
	// SGSN's address 127.0.0.1:2152 is free for the sink.
	ggsn := startOsmoGGSN(b, ns)
	osmoUE, osmoTEID := createOsmoContext(b, ns, ggsn.dir)

	bo, err := New(Config{
		Name: "sbs", Listen: netip.MustParseAddrPort("127.0.30.1:2152"), NetNS: ns.path(), Workers: 1,
		TUNName: "rdvbo-sbs0", Pools: []netip.Prefix{netip.MustParsePrefix("10.45.0.0/16")},
		TUNAddr: netip.MustParsePrefix("10.45.0.1/32"), NoNAT: true,
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { bo.Close() })
	ourUE := netip.MustParseAddr("10.45.0.2")
	if err := bo.Install(Tunnel{LocalTEID: 0x1001, PeerTEID: 0x2001, Peer: netip.MustParseAddrPort("127.0.0.1:2152"), UE: ourUE}); err != nil {
		b.Fatal(err)
	}
	pinAllThreads(b, 1) // threads New started

	type sut struct {
		name   string
		listen string
		teid   TEID
		ue     netip.Addr
		tun    string
		cpu    func() time.Duration
		wait   func() time.Duration
	}
	osmoPid := ggsn.cmd.Process.Pid
	suts := []sut{
		{"rendezvous", "127.0.30.1:2152", 0x1001, ourUE, "rdvbo-sbs0", selfCPU, func() time.Duration { return runqWait(os.Getpid()) }},
		{"osmo-ggsn", "127.0.0.2:2152", osmoTEID, osmoUE, "rdvbo-ggsn0", func() time.Duration { return procCPU(b, osmoPid) }, func() time.Duration { return runqWait(osmoPid) }},
	}
	var report strings.Builder
	fmt.Fprintf(&report, "\n%-14s %-8s %5s %12s %12s %10s %9s %13s %9s\n", "sut", "dir", "size", "offered pps", "pps", "Gbit/s", "CPU", "pkt/CPU-s", "runq-wait")
	row := func(name, dir string, size int, offered, delivered uint64, cpu, wait time.Duration) {
		pps := float64(delivered) / window.Seconds()
		perCPU := 0.0
		if cpu > 0 {
			perCPU = float64(delivered) / cpu.Seconds()
		}
		fmt.Fprintf(&report, "%-14s %-8s %5d %12.0f %12.0f %10.3f %8.0f%% %13.0f %8.0f%%\n", name, dir, size,
			float64(offered)/window.Seconds(), pps, pps*float64(size)*8/1e9, 100*cpu.Seconds()/window.Seconds(), perCPU,
			100*wait.Seconds()/window.Seconds())
		b.ReportMetric(perCPU, fmt.Sprintf("pkt/CPU-s:%s-%s-%d", name, dir, size))
	}
	// Flat out (rate 0), then paced at a rate both SUTs sustain, where
	// the comparison is the CPU each needs for the same packets.
	paced := 20000
	for _, size := range []int{64, 1400} {
		for _, rate := range []int{0, paced} {
			tag := ""
			if rate > 0 {
				tag = fmt.Sprintf("@%dk", rate/1000)
			}
			for _, s := range suts {
				// Uplink: G-PDUs from 127.0.0.1 (the SGSN's address) to the SUT.
				res := runHelpers(b, ns, window, func(start func(args ...string)) {
					start("mode=gtpu", "to="+s.listen, "teid="+strconv.Itoa(int(s.teid)), "src="+s.ue.String(), "dst=198.51.100.1", "size="+strconv.Itoa(size), "pps="+strconv.Itoa(rate))
				}, func() (sample, time.Duration, time.Duration) { return sampleNS(b, ns, s.tun), s.cpu(), s.wait() })
				row(s.name+tag, "uplink", size, res.d.udpOut, res.d.tunRx, res.cpu, res.wait)
				// Downlink: UDP to the UE address, routed into the SUT's TUN,
				// encapsulated to the sink on 127.0.0.1:2152.
				res = runHelpers(b, ns, window, func(start func(args ...string)) {
					start("mode=sink", "listen=127.0.0.1:2152")
					start("mode=udp", "to="+netip.AddrPortFrom(s.ue, 9).String(), "size="+strconv.Itoa(size), "pps="+strconv.Itoa(rate))
				}, func() (sample, time.Duration, time.Duration) { return sampleNS(b, ns, s.tun), s.cpu(), s.wait() })
				row(s.name+tag, "downlink", size, res.d.tunTx, res.d.udpIn, res.cpu, res.wait)
			}
		}
		// The raw TUN write limit, measured the same way: the same uplink
		// packets written by one goroutine into a TUN device as fast as it
		// can, no GTP-U, no sockets.
		res := rawTUNWrite(b, ns, window, size)
		row("raw-tun", "write", size, res.d.tunRx, res.d.tunRx, res.cpu, res.wait)
	}
	b.Log(report.String())
	fmt.Fprint(os.Stderr, report.String())
}

type sample struct {
	tunRx, tunTx    uint64 // SUT's TUN: packets it wrote / packets routed to it (incl. dropped)
	udpIn, udpOut   uint64 // /proc/net/snmp Udp InDatagrams / OutDatagrams in the namespace
	udpRcvbufErrors uint64
	at              time.Time
}

type phaseResult struct {
	d    sample // deltas over the window
	cpu  time.Duration
	wait time.Duration // time runnable but waiting for the CPU
}

func sampleNS(b *testing.B, ns *testNS, tun string) sample {
	var s sample
	ns.do(b, func() error {
		h, err := netlink.NewHandle()
		if err != nil {
			return err
		}
		defer h.Close()
		l, err := h.LinkByName(tun)
		if err != nil {
			return err
		}
		st := l.Attrs().Statistics
		s.tunRx, s.tunTx = st.RxPackets, st.TxPackets+st.TxDropped
		snmp, err := os.ReadFile("/proc/thread-self/net/snmp")
		if err != nil {
			return err
		}
		var hdr []string
		for _, line := range strings.Split(string(snmp), "\n") {
			if !strings.HasPrefix(line, "Udp: ") {
				continue
			}
			f := strings.Fields(line)
			if hdr == nil {
				hdr = f
				continue
			}
			for i, name := range hdr {
				v, _ := strconv.ParseUint(f[i], 10, 64)
				switch name {
				case "InDatagrams":
					s.udpIn = v
				case "OutDatagrams":
					s.udpOut = v
				case "RcvbufErrors":
					s.udpRcvbufErrors = v
				}
			}
		}
		return nil
	})
	s.at = time.Now()
	return s
}

func (s sample) sub(o sample) sample {
	return sample{tunRx: s.tunRx - o.tunRx, tunTx: s.tunTx - o.tunTx, udpIn: s.udpIn - o.udpIn,
		udpOut: s.udpOut - o.udpOut, udpRcvbufErrors: s.udpRcvbufErrors - o.udpRcvbufErrors}
}

// runHelpers starts helper processes (this test binary, on CPU 0, in the
// namespace) for warm-up + window + tail, samples at the window's edges.
func runHelpers(b *testing.B, ns *testNS, window time.Duration, start func(func(args ...string)), measure func() (sample, time.Duration, time.Duration)) phaseResult {
	const warm, tail = 500 * time.Millisecond, 300 * time.Millisecond
	var cmds []*exec.Cmd
	launch := func(args ...string) {
		cmd := exec.Command("ip", "netns", "exec", ns.name, "taskset", "-c", "0", os.Args[0], "-test.run=^TestHelperLoad$")
		cmd.Env = append(os.Environ(), "RDVBO_HELPER=1", "RDVBO_DURATION="+(warm+window+tail).String())
		for _, a := range args {
			cmd.Env = append(cmd.Env, "RDVBO_"+strings.ToUpper(strings.SplitN(a, "=", 2)[0])+"="+strings.SplitN(a, "=", 2)[1])
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		cmds = append(cmds, cmd)
		time.Sleep(50 * time.Millisecond) // sink binds before the sender starts
	}
	start(launch)
	time.Sleep(warm)
	s0, c0, w0 := measure()
	time.Sleep(window)
	s1, c1, w1 := measure()
	for _, c := range cmds {
		if err := c.Wait(); err != nil {
			b.Fatalf("helper: %v", err)
		}
	}
	return phaseResult{d: s1.sub(s0), cpu: c1 - c0, wait: w1 - w0}
}

// TestHelperLoad is the sender/sink process of BenchmarkSideBySide; it does
// nothing unless RDVBO_HELPER=1.
func TestHelperLoad(t *testing.T) {
	if os.Getenv("RDVBO_HELPER") != "1" {
		t.Skip("helper process for BenchmarkSideBySide")
	}
	dur, _ := time.ParseDuration(os.Getenv("RDVBO_DURATION"))
	size, _ := strconv.Atoi(os.Getenv("RDVBO_SIZE"))
	deadline := time.Now().Add(dur)
	const batch = 64
	switch os.Getenv("RDVBO_MODE") {
	case "gtpu", "udp":
		to := netip.MustParseAddrPort(os.Getenv("RDVBO_TO"))
		var pkt []byte
		laddr := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}
		if os.Getenv("RDVBO_MODE") == "gtpu" {
			teid, _ := strconv.Atoi(os.Getenv("RDVBO_TEID"))
			pkt = gpdu(t, TEID(teid), ipv4UDP(netip.MustParseAddr(os.Getenv("RDVBO_SRC")), netip.MustParseAddr(os.Getenv("RDVBO_DST")), size-28))
		} else {
			pkt = make([]byte, size-28)
			laddr = nil
		}
		c, err := net.ListenUDP("udp4", laddr)
		if err != nil {
			t.Fatal(err)
		}
		rc, _ := c.SyscallConn()
		tx := newMmsgBatch(rc, batch, 0, 0)
		sa := makeSockaddr(to)
		// RDVBO_PPS > 0: paced at that rate in bursts of 16; else flat out.
		pps, _ := strconv.Atoi(os.Getenv("RDVBO_PPS"))
		n, gap := batch, time.Duration(0)
		if pps > 0 {
			n, gap = 16, time.Duration(16*int64(time.Second)/int64(pps))
		}
		next := time.Now()
		for time.Now().Before(deadline) {
			for j := 0; j < n; j++ {
				tx.queue(pkt, &sa)
			}
			tx.flush()
			if gap > 0 {
				next = next.Add(gap)
				if d := time.Until(next); d > 0 {
					time.Sleep(d)
				}
			}
		}
	case "sink":
		c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(os.Getenv("RDVBO_LISTEN"))))
		if err != nil {
			t.Fatal(err)
		}
		rc, _ := c.SyscallConn()
		setBuf(rc)
		rx := newMmsgBatch(rc, batch, 2048, 0)
		c.SetReadDeadline(deadline)
		for {
			if _, err := rx.recv(); err != nil {
				return
			}
		}
	}
}

func setBuf(rc syscall.RawConn) {
	rc.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 4<<20) })
}

func rawTUNWrite(b *testing.B, ns *testNS, window time.Duration, size int) phaseResult {
	var t *tunEgress
	name := "rdvbo-raw0"
	ns.do(b, func() (err error) {
		cfg := Config{Name: "raw", TUNName: name, MTU: 1500, NoNAT: true}
		t, err = openTUN(&cfg, 1, netns.None())
		return err
	})
	defer t.Close()
	pinAllThreads(b, 1)
	pkt := ipv4UDP(netip.MustParseAddr("10.46.0.2"), netip.MustParseAddr("198.51.100.1"), size-28)
	var stop atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		q := t.Queue(0)
		for !stop.Load() {
			for i := 0; i < 64; i++ {
				q.WritePacket(pkt)
			}
		}
	}()
	time.Sleep(300 * time.Millisecond)
	s0, c0, w0 := sampleNS(b, ns, name), selfCPU(), runqWait(os.Getpid())
	time.Sleep(window)
	s1, c1, w1 := sampleNS(b, ns, name), selfCPU(), runqWait(os.Getpid())
	stop.Store(true)
	<-done
	return phaseResult{d: s1.sub(s0), cpu: c1 - c0, wait: w1 - w0}
}

func selfCPU() time.Duration {
	var ru unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procCPU returns utime+stime of pid (from /proc/pid/stat, USER_HZ = 100).
func procCPU(b *testing.B, pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	f := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+2:]))
	ut, _ := strconv.ParseUint(f[11], 10, 64)
	st, _ := strconv.ParseUint(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// runqWait sums the time the threads of pid spent runnable but waiting for
// a CPU (/proc/pid/task/*/schedstat, second field): high means the SUT was
// starved by other load, not idle.
func runqWait(pid int) time.Duration {
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	var sum time.Duration
	for _, t := range tasks {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, t.Name()))
		if err != nil {
			continue
		}
		f := strings.Fields(string(data))
		if len(f) >= 2 {
			v, _ := strconv.ParseInt(f[1], 10, 64)
			sum += time.Duration(v)
		}
	}
	return sum
}

// pinAllThreads sets the CPU affinity of every thread of this process to
// cpu (or to all CPUs if cpu < 0). New threads inherit it from their creator.
func pinAllThreads(b *testing.B, cpu int) {
	var set unix.CPUSet
	if cpu < 0 {
		for i := 0; i < runtime.NumCPU(); i++ {
			set.Set(i)
		}
	} else {
		set.Set(cpu)
	}
	tasks, _ := os.ReadDir("/proc/self/task")
	for _, t := range tasks {
		tid, _ := strconv.Atoi(t.Name())
		_ = unix.SchedSetaffinity(tid, &set)
	}
}

type osmoGGSN struct {
	cmd *exec.Cmd
	dir string
}

func startOsmoGGSN(b *testing.B, ns *testNS) *osmoGGSN {
	dir := b.TempDir()
	os.MkdirAll(filepath.Join(dir, "state"), 0o755)
	cfg := fmt.Sprintf(`log stderr
 logging filter all 1
 logging color 0
 logging print category 1
 logging level ggsn notice
 logging level lgtp notice
!
line vty
 no login
 bind 127.0.0.2
ctrl
 bind 127.0.0.2
!
ggsn ggsn0
 gtp state-dir %s/state
 gtp bind-ip 127.0.0.2
 apn internet
  gtpu-mode tun
  tun-device rdvbo-ggsn0
  type-support v4
  ip prefix dynamic 198.18.0.0/16
  ip dns 0 198.51.100.53
  ip ifconfig 198.18.0.1/16
  no shutdown
 default-apn internet
 no shutdown ggsn
`, dir)
	path := filepath.Join(dir, "osmo-ggsn.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		b.Fatal(err)
	}
	log, _ := os.Create(filepath.Join(dir, "ggsn.log"))
	cmd := exec.Command("ip", "netns", "exec", ns.name, "taskset", "-c", "1", "osmo-ggsn", "-c", path)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		log.Close()
	})
	waitFor(b, "osmo-ggsn to start", func() bool {
		data, _ := os.ReadFile(filepath.Join(dir, "ggsn.log"))
		return bytes.Contains(data, []byte("Successfully started"))
	})
	return &osmoGGSN{cmd: cmd, dir: dir}
}

var euaRE = regexp.MustCompile(`received EUA with IP address: ([0-9.]+)`)
var dataRE = regexp.MustCompile(`Data: 127\.0\.0\.2:([0-9a-f]{8})`)

func createOsmoContext(b *testing.B, ns *testNS, dir string) (netip.Addr, TEID) {
	sg := filepath.Join(dir, "sgsnemu")
	os.MkdirAll(sg, 0o755)
	cmd := exec.Command("ip", "netns", "exec", ns.name, "stdbuf", "-oL", "sgsnemu", "-l", "127.0.0.1", "-r", "127.0.0.2",
		"--contexts", "1", "--timelimit", "600", "--apn", "internet", "--imsi", "901700000000001", "--msisdn", "46700000001")
	cmd.Dir = sg
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	var ue netip.Addr
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if m := euaRE.FindStringSubmatch(sc.Text()); m != nil {
			ue = netip.MustParseAddr(m[1])
			break
		}
	}
	// Killed without Delete PDP Context: the context stays in osmo-ggsn
	// and 127.0.0.1:2152 becomes free for the sink.
	cmd.Process.Kill()
	cmd.Wait()
	if !ue.IsValid() {
		b.Fatal("sgsnemu: no PDP context")
	}
	var teid TEID
	ns.do(b, func() error {
		c, err := net.DialTimeout("tcp", "127.0.0.2:4260", 3*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.Write([]byte("enable\r\nshow pdp-context ggsn ggsn0\r\n"))
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		var buf []byte
		tmp := make([]byte, 4096)
		for {
			n, err := c.Read(tmp)
			buf = append(buf, tmp[:n]...)
			if m := dataRE.FindSubmatch(buf); m != nil {
				v, _ := strconv.ParseUint(string(m[1]), 16, 32)
				teid = TEID(v)
				return nil
			}
			if err != nil {
				return fmt.Errorf("osmo-ggsn VTY: %w: %s", err, buf)
			}
		}
	})
	return ue, teid
}
