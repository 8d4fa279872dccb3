package faultnet

import (
	"bytes"
	"errors"
	"io"
	"net/netip"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func TestStreamDelayLineKeepsOrderAndPartitionCuts(t *testing.T) {
	n := New(1)
	a, b := netip.MustParseAddr("127.0.40.240"), netip.MustParseAddr("127.0.40.241")
	n.SetRTT(func(x, y netip.Addr) time.Duration { return 20 * time.Millisecond })
	ln, err := n.Listen(b, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			accepted <- nil
			return
		}
		defer c.Close()
		buf := make([]byte, 100*10)
		if _, err := io.ReadFull(c, buf); err != nil {
			accepted <- nil
			return
		}
		accepted <- buf
	}()
	sa, err := n.Listen(a, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer sa.Close()
	c, err := sa.Dial(raft.ServerAddress(ln.Addr().String()), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	for i := 0; i < 100; i++ {
		chunk := bytes.Repeat([]byte{byte(i)}, 10)
		want.Write(chunk)
		if _, err := c.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	got := <-accepted
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatal("delayed stream reordered or lost data")
	}
	// A partition cuts the connection and blocks new dials.
	n.Partition([]netip.Addr{a})
	if _, err := c.Write([]byte("x")); !errors.Is(err, ErrPartitioned) {
		t.Fatalf("write across a partition: %v", err)
	}
	if _, err := sa.Dial(raft.ServerAddress(ln.Addr().String()), time.Second); !errors.Is(err, ErrPartitioned) {
		t.Fatalf("dial across a partition: %v", err)
	}
	if err := c.Close(); err != nil && !errors.Is(err, io.EOF) {
		t.Logf("close: %v", err)
	}
}
