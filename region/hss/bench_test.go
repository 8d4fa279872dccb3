package hss

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fiorix/go-diameter/v4/diam"

	"github.com/rendezvous-core/rendezvous/federation/registry"
	"github.com/rendezvous-core/rendezvous/topology"
)

// BenchmarkS6a measures AIR and ULR answered per second over 1 and 4 TCP
// connections with 64 requests in flight on each, against this HSS (real
// Milenage, SQLite registry) and, in the same run with the same client
// loop, against go-diameter v4.3.0's examples/s6a_server (one static
// vector, no registry). Run:
//
//	go test -run XXX -bench S6a -benchtime 2s ./region/hss/
func BenchmarkS6a(b *testing.B) {
	const nsubs = 64
	imsis := make([]topology.IMSI, nsubs)
	for i := range imsis {
		imsis[i] = benchIMSI(i)
	}
	// Every server in its own process, so that none shares a heap, GC or
	// scheduler with the load generator. Two registries: the default SQN
	// block (32: one SQLite write per 32 vectors of a subscriber) and 4096,
	// which isolates the Diameter + Milenage path from SQLite's fsyncs.
	servers := map[string]netip.AddrPort{
		"rendezvous":              startBenchHSS(b, "127.0.10.3", 0, nsubs),
		"rendezvous-sqnblock4096": startBenchHSS(b, "127.0.10.4", 4096, nsubs),
		"go-diameter-example":     startExampleServer(b),
	}
	for _, cmd := range []string{"AIR", "ULR"} {
		for _, name := range []string{"rendezvous", "rendezvous-sqnblock4096", "go-diameter-example"} {
			if cmd == "ULR" && name == "rendezvous-sqnblock4096" {
				continue // no SQNs in a ULR
			}
			for _, conns := range []int{1, 4} {
				b.Run(fmt.Sprintf("%s/%s/conns=%d", cmd, name, conns), func(b *testing.B) {
					runLoad(b, servers[name], cmd, imsis, conns, 64)
				})
			}
		}
	}
}

func benchIMSI(i int) topology.IMSI { return topology.IMSI(fmt.Sprintf("00101%010d", 900000+i)) }

// startBenchHSS runs this test binary as a server process (benchServe).
func startBenchHSS(b *testing.B, ip string, sqnBlock, nsubs int) netip.AddrPort {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "HSS_BENCH_SERVE="+ip+":0",
		fmt.Sprintf("HSS_BENCH_SQNBLOCK=%d", sqnBlock), fmt.Sprintf("HSS_BENCH_SUBS=%d", nsubs))
	if p := os.Getenv("HSS_BENCH_PROFILE"); p != "" {
		cmd.Env = append(cmd.Env, "HSS_BENCH_PROFILE="+p+"-"+ip)
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { stdin.Close(); cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		b.Fatalf("bench server: %v", err)
	}
	ap, err := netip.ParseAddrPort(strings.TrimSpace(strings.TrimPrefix(line, "READY ")))
	if err != nil {
		b.Fatalf("bench server said %q", line)
	}
	return ap
}

// benchServe is the server process of BenchmarkS6a: a registry on SQLite
// in a temporary directory with HSS_BENCH_SUBS subscribers, and an HSS on
// addr; it prints "READY <addr>" and serves until stdin closes.
func benchServe(addr string) int {
	fail := func(err error) int { fmt.Fprintln(os.Stderr, "bench server:", err); return 1 }
	dir, err := os.MkdirTemp("", "hss-bench-")
	if err != nil {
		return fail(err)
	}
	defer os.RemoveAll(dir)
	blk, _ := strconv.Atoi(os.Getenv("HSS_BENCH_SQNBLOCK"))
	n, _ := strconv.Atoi(os.Getenv("HSS_BENCH_SUBS"))
	kek := make([]byte, 32)
	rand.Read(kek)
	ctx := context.Background()
	st, err := registry.Open(ctx, registry.Config{DSN: "sqlite:" + dir + "/registry.db", Region: topology.JP,
		KEK: kek, KEKID: "bench", SQNBlock: blk})
	if err != nil {
		return fail(err)
	}
	defer st.Close()
	for i := range n {
		var a registry.AuthData
		rand.Read(a.Ki[:])
		rand.Read(a.OPc[:])
		sub := registry.Subscriber{IMSI: benchIMSI(i), MSISDN: fmt.Sprintf("8199%07d", i), HomeRegion: topology.JP,
			APNs: []registry.APN{{Name: "iot.rendezvous", PDNType: registry.PDNIPv4}}}
		if err := st.Provision(ctx, sub, a); err != nil {
			return fail(err)
		}
	}
	s, err := New(Config{
		OriginHost: "hss.jp.rendezvous.example", OriginRealm: "rendezvous.example",
		Listen: []netip.AddrPort{netip.MustParseAddrPort(addr)}, Region: topology.JP, Peers: LabPeers(),
		Subscribers: st, Steering: NearestSteerer{Fallback: topology.JP}, PGWs: testPGWs, MaxInFlight: 1024,
	})
	if err != nil {
		return fail(err)
	}
	defer s.Close()
	if f := os.Getenv("HSS_BENCH_PROFILE"); f != "" { // CPU and mutex profiles of the server
		runtime.SetMutexProfileFraction(5)
		cpu, err := os.Create(f + ".cpu")
		if err != nil {
			return fail(err)
		}
		pprof.StartCPUProfile(cpu)
		defer func() {
			pprof.StopCPUProfile()
			cpu.Close()
			if mu, err := os.Create(f + ".mutex"); err == nil {
				pprof.Lookup("mutex").WriteTo(mu, 0)
				mu.Close()
			}
		}()
	}
	fmt.Printf("READY %s\n", s.Addrs()[0])
	io.Copy(io.Discard, os.Stdin)
	return 0
}

// startExampleServer runs go-diameter's examples/s6a_server on 127.0.10.2.
func startExampleServer(b *testing.B) netip.AddrPort {
	bin := exampleBinary(b, "s6a_server")
	ln, err := net.Listen("tcp", "127.0.10.2:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := ln.Addr().(*net.TCPAddr).AddrPort()
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "-addr", addr.String(), "-pprof_addr", "",
		"-diam_host", "hss.example", "-diam_realm", "example")
	if err := cmd.Start(); err != nil {
		cancel()
		requireTool(b, "start s6a_server", err)
	}
	b.Cleanup(func() { cancel(); cmd.Wait() })
	deadline := time.Now().Add(hang)
	for {
		c, err := net.Dial("tcp", addr.String())
		if err == nil {
			c.Close()
			return addr
		}
		if time.Now().After(deadline) {
			b.Fatalf("s6a_server did not start: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// runLoad sends b.N requests of cmd over conns connections, window requests
// in flight on each, and reports answers per second.
func runLoad(b *testing.B, addr netip.AddrPort, cmd string, imsis []topology.IMSI, conns, window int) {
	type conn struct {
		nc    net.Conn
		br    *bufio.Reader
		tmpls [][]byte
	}
	cs := make([]*conn, conns)
	for i := range cs {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 10, 9)}}
		nc, err := d.Dial("tcp", addr.String())
		if err != nil {
			b.Fatal(err)
		}
		defer nc.Close()
		// One MME with several connections: a ULR never moves the
		// subscriber to another MME (no CLR in the measurement).
		mme := &testMME{host: "mme.bench.visited.example", realm: "visited.example"}
		c := &conn{nc: nc, br: bufio.NewReaderSize(nc, 64<<10)}
		cer, _ := mme.cer(true).Serialize()
		nc.Write(cer)
		if code, err := readResult(c.br); err != nil || code != codeSuccess {
			b.Fatalf("CER: %d %v", code, err)
		}
		for _, imsi := range imsis {
			var m *diam.Message
			if cmd == "AIR" {
				m = mme.air(imsi, plmnOf("26201"), 1, nil)
			} else {
				m = mme.ulr(imsi, plmnOf("26201"), ulrS6aIndicator, 1004)
			}
			t, _ := m.Serialize()
			c.tmpls = append(c.tmpls, t)
		}
		cs[i] = c
	}
	var next atomic.Int64
	var failed, lastCode atomic.Int64
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for ci, c := range cs {
		wg.Add(2)
		sem := make(chan struct{}, window)
		n := b.N / conns
		if ci < b.N%conns {
			n++
		}
		go func() { // sender
			defer wg.Done()
			w := bufio.NewWriterSize(c.nc, 64<<10)
			for i := 0; i < n; i++ {
				sem <- struct{}{}
				k := next.Add(1)
				t := c.tmpls[int(k)%len(c.tmpls)]
				binary.BigEndian.PutUint32(t[12:], uint32(k))
				binary.BigEndian.PutUint32(t[16:], uint32(k))
				w.Write(t)
				if len(sem) == cap(sem) || i == n-1 {
					w.Flush()
				}
			}
			w.Flush()
		}()
		go func() { // receiver
			defer wg.Done()
			for i := 0; i < n; i++ {
				code, err := readResult(c.br)
				if err != nil {
					b.Errorf("read: %v", err)
					return
				}
				if code != codeSuccess {
					failed.Add(1)
					lastCode.Store(int64(code))
				}
				<-sem
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/el.Seconds(), "answers/s")
	// Under overload the HSS may rightly answer 3004 (registry too slow
	// within RequestTimeout); report it, fail only on anything else.
	if f := failed.Load(); f > 0 {
		b.ReportMetric(float64(f)/float64(b.N), "non-2001/op")
		if c := lastCode.Load(); c != codeTooBusy {
			b.Fatalf("%d answers were not 2001 (e.g. %d)", f, c)
		}
	}
}

// readResult reads one message and returns its top-level Result-Code.
func readResult(br *bufio.Reader) (uint32, error) {
	var hb [hdrLen]byte
	if _, err := io.ReadFull(br, hb[:]); err != nil {
		return 0, err
	}
	h := parseHeader(hb[:])
	body := make([]byte, h.Length-hdrLen)
	if _, err := io.ReadFull(br, body); err != nil {
		return 0, err
	}
	for n := 0; n+8 <= len(body); {
		code := binary.BigEndian.Uint32(body[n:])
		l := int(body[n+5])<<16 | int(body[n+6])<<8 | int(body[n+7])
		if l < 8 || n+l > len(body) {
			break
		}
		if code == 268 && l == 12 {
			return binary.BigEndian.Uint32(body[n+8:]), nil
		}
		n += (l + 3) &^ 3
	}
	return 0, nil
}
