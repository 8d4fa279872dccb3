package hss

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fiorix/go-diameter/v4/diam"

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
	// Two registries: the default SQN block (32: one SQLite write per 32
	// vectors of a subscriber) and a large one (4096), which isolates the
	// Diameter + Milenage path from the database's fsyncs.
	servers := map[string]netip.AddrPort{}
	var imsis []topology.IMSI
	for _, v := range []struct {
		name  string
		block int
	}{{"rendezvous", 0}, {"rendezvous-sqnblock4096", 4096}} {
		st := openStoreSQN(b, v.block)
		imsiSeq.Store(0) // the same IMSIs in both registries
		imsis = imsis[:0]
		for range nsubs {
			sub, _ := provision(b, st, nil)
			imsis = append(imsis, sub.IMSI)
		}
		servers[v.name] = startHSS(b, st, func(c *Config) { c.MaxInFlight = 1024; c.Logger = nil }).Addrs()[0]
	}
	servers["go-diameter-example"] = startExampleServer(b)
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
