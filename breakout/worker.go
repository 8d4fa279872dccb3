package breakout

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Per-goroutine statistics, indexes into stats.c.
const (
	statUpPackets = iota
	statUpBytes
	statDownPackets
	statDownBytes
	statEchoRequests
	statEchoResponses
	statErrIndSent
	statErrIndLimited
	statErrIndRecv
	statEndMarkers
	statExtHdrNtf
	statDrop0 // + dropReason
	numStats  = statDrop0 + int(numDropReasons)
)

// stats are written by one goroutine and read by metrics and Stats.
type stats struct {
	c [numStats]atomic.Uint64
	_ [64]byte // keep neighbours off our cache lines
}

func (s *stats) drop(r dropReason) { s.c[statDrop0+int(r)].Add(1) }

const (
	// rxBufSize is the compact receive buffer per datagram (a G-PDU with
	// a 1500-octet inner packet and extension headers fits); rxOverSize
	// extends it for jumbo datagrams through a second iovec. Longer ones
	// are truncated by the kernel, detected and dropped. Compact buffers
	// matter: 64 x 9 KiB would not stay in the cache (measured: -20 %
	// packets per CPU-second at 1400 octets).
	rxBufSize  = 2048
	rxOverSize = 9216 + 64 - rxBufSize
	// ctlBufSize fits the longest reply we build (Error Indication, IPv6).
	ctlBufSize = 64
)

// worker owns one socket and one egress queue, and two goroutines.
type worker struct {
	b    *Breakout
	id   int
	q    EgressQueue
	up   *stats
	down *stats

	rx      *mmsgBatch // uplink receive
	scratch []byte     // a long datagram reassembled from its two iovecs
	ctl     *mmsgBatch // uplink replies (Echo Response, Error Indication)
	ctlBufs [][]byte
	tx      *mmsgBatch // downlink send
	dlFull  [][]byte   // downlink buffers
	dlBufs  [][]byte   // dlFull[i][gtpuHeaderLen:]: the packet read from the egress
	dlSizes []int
}

func (b *Breakout) newWorker(i int, up, down *stats) (*worker, error) {
	rc, err := b.conns[i].SyscallConn()
	if err != nil {
		return nil, err
	}
	n := b.cfg.BatchSize
	w := &worker{b: b, id: i, q: b.egress.Queue(i), up: up, down: down,
		rx: newMmsgBatch(rc, n, rxBufSize, rxOverSize), ctl: newMmsgBatch(rc, n, 0, 0), tx: newMmsgBatch(rc, n, 0, 0),
		scratch: make([]byte, rxBufSize+rxOverSize)}
	ctlMem := make([]byte, n*ctlBufSize)
	dlSize := gtpuHeaderLen + b.cfg.MTU + 1 // +1: a full buffer means truncated
	dlMem := make([]byte, n*dlSize)
	for j := 0; j < n; j++ {
		w.ctlBufs = append(w.ctlBufs, ctlMem[j*ctlBufSize:(j+1)*ctlBufSize:(j+1)*ctlBufSize])
		full := dlMem[j*dlSize : (j+1)*dlSize : (j+1)*dlSize]
		w.dlFull = append(w.dlFull, full)
		w.dlBufs = append(w.dlBufs, full[gtpuHeaderLen:])
	}
	w.dlSizes = make([]int, n)
	return w, nil
}

func (w *worker) closedErr(err error) bool {
	return w.b.closed.Load() || errors.Is(err, net.ErrClosed)
}

// uplink receives GTP-U in batches, decapsulates T-PDUs to the egress and
// answers signalling messages in a batch per received batch.
func (w *worker) uplink() {
	defer w.b.wg.Done()
	for {
		n, err := w.rx.recv()
		if err != nil {
			if w.closedErr(err) {
				return
			}
			w.b.log().Warn("breakout: recvmmsg", "node", w.b.cfg.Name, "worker", w.id, "err", err)
			time.Sleep(10 * time.Millisecond) // transient (ENOMEM): do not spin
			continue
		}
		for i := 0; i < n; i++ {
			h := &w.rx.hdrs[i]
			if h.hdr.Flags&unix.MSG_TRUNC != 0 {
				w.up.drop(dropLength)
				continue
			}
			w.handleUp(w.rx.datagram(i, w.scratch), &w.rx.names[i])
		}
		if w.ctl.n > 0 {
			_, failed := w.ctl.flush()
			for ; failed > 0; failed-- {
				w.up.drop(dropSend)
			}
		}
	}
}

// handleUp processes one datagram from src. It does not allocate.
func (w *worker) handleUp(pkt []byte, src *sockaddr) {
	var h header
	if r := decodeHeader(pkt, &h); r != dropNone {
		w.up.drop(r)
		return
	}
	switch h.msgType {
	case msgGPDU:
		e := w.b.tab.byTEID(h.teid)
		if e == nil {
			w.up.drop(dropUnknownTEID)
			w.errorIndication(h.teid, src)
			return
		}
		// The T-PDU must come from the peer the control plane installed
		// (any source port: TS 29.281 §4.4.2.0 lets the sender pick it).
		from := src.addrPort()
		if from.Addr() != e.peerIP {
			w.up.drop(dropSpoofedPeer)
			e.ctr.dropped.Add(1)
			return
		}
		inner := pkt[h.payload:h.end]
		isrc, _, ok := innerAddrs(inner)
		if !ok {
			w.up.drop(dropInnerMalformed)
			e.ctr.dropped.Add(1)
			return
		}
		if isrc != e.t.UE {
			w.up.drop(dropSpoofedUE)
			e.ctr.dropped.Add(1)
			return
		}
		if err := w.q.WritePacket(inner); err != nil {
			w.up.drop(dropEgress)
			e.ctr.dropped.Add(1)
			return
		}
		e.ctr.packetsUp.Add(1)
		e.ctr.bytesUp.Add(uint64(len(inner)))
		w.up.c[statUpPackets].Add(1)
		w.up.c[statUpBytes].Add(uint64(len(inner)))
	case msgEchoRequest:
		// §7.2.1: answer every Echo Request, from whomever, to its source.
		w.up.c[statEchoRequests].Add(1)
		buf := w.ctlBuf()
		n := putEchoResponse(buf, h.seq, w.b.cfg.Recovery)
		w.queueCtl(buf[:n], src)
	case msgEchoResponse:
		w.up.c[statEchoResponses].Add(1)
	case msgEndMarker:
		// §7.3.2: the end of the payload stream on this path. We are the
		// tunnel's endpoint, with nothing to relay it to: the packets
		// before it were already delivered in order, so it is counted.
		e := w.b.tab.byTEID(h.teid)
		if e == nil {
			w.up.drop(dropUnknownTEID)
			return
		}
		if src.addrPort().Addr() != e.peerIP {
			w.up.drop(dropSpoofedPeer)
			e.ctr.dropped.Add(1)
			return
		}
		w.up.c[statEndMarkers].Add(1)
	case msgErrorIndication:
		w.up.c[statErrIndRecv].Add(1)
		if f := w.b.cfg.OnErrorIndication; f != nil {
			if teid, ok := errorIndicationTEID(pkt[h.payload:h.end]); ok {
				f(src.addrPort(), teid)
			}
		}
	case msgSupportedExtHdrNtf:
		w.up.c[statExtHdrNtf].Add(1)
	default:
		w.up.drop(dropUnknownType)
	}
}

// errorIndication answers a T-PDU for an unknown TEID (TS 29.281 §7.3.1),
// to the sender's address on the GTP-U port 2152 (§4.4.2; the trigger's
// source port travels in the UDP Port extension header, §5.2.2.1), at most at the
// configured rate node-wide.
func (w *worker) errorIndication(teid TEID, src *sockaddr) {
	if !w.b.errInd.AllowN(w.b.cfg.Now(), 1) {
		w.up.c[statErrIndLimited].Add(1)
		return
	}
	from := src.addrPort()
	buf := w.ctlBuf()
	n := putErrorIndication(buf, teid, w.b.local, from.Port())
	to := makeSockaddr(netip.AddrPortFrom(from.Addr(), 2152))
	w.queueCtl(buf[:n], &to)
	w.up.c[statErrIndSent].Add(1)
}

// ctlBuf returns the reply buffer for the next queued reply, flushing the
// reply batch first if it is full (its buffers are still referenced).
func (w *worker) ctlBuf() []byte {
	if w.ctl.n == len(w.ctlBufs) {
		_, failed := w.ctl.flush()
		for ; failed > 0; failed-- {
			w.up.drop(dropSend)
		}
	}
	return w.ctlBufs[w.ctl.n]
}

func (w *worker) queueCtl(p []byte, to *sockaddr) {
	_, failed := w.ctl.queue(p, to)
	for ; failed > 0; failed-- {
		w.up.drop(dropSend)
	}
}

// errorIndicationTEID returns the Tunnel Endpoint Identifier Data I of an
// Error Indication's IEs (TS 29.281 §7.3.1, §8.3).
func errorIndicationTEID(ies []byte) (TEID, bool) {
	for len(ies) > 0 {
		t := ies[0]
		switch {
		case t == ieTEIDDataI:
			if len(ies) < 5 {
				return 0, false
			}
			return TEID(binary.BigEndian.Uint32(ies[1:5])), true
		case t == ieRecovery:
			ies = ies[min(2, len(ies)):]
		case t >= 128: // TLV, §8.1
			if len(ies) < 3 {
				return 0, false
			}
			n := 3 + int(binary.BigEndian.Uint16(ies[1:3]))
			if n > len(ies) {
				return 0, false
			}
			ies = ies[n:]
		default:
			return 0, false
		}
	}
	return 0, false
}

// downlink reads bursts of packets from the egress, finds each one's tunnel
// by destination address, prepends the G-PDU header in place and sends the
// burst with one sendmmsg.
func (w *worker) downlink() {
	defer w.b.wg.Done()
	for {
		n, err := w.q.ReadPackets(w.dlBufs, w.dlSizes)
		if err != nil {
			if w.closedErr(err) {
				return
			}
			w.b.log().Warn("breakout: egress read", "node", w.b.cfg.Name, "worker", w.id, "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		for i := 0; i < n; i++ {
			size := w.dlSizes[i]
			if size >= len(w.dlBufs[i]) {
				w.down.drop(dropLength) // truncated: larger than the MTU
				continue
			}
			pkt := w.dlBufs[i][:size]
			dst, ok := innerDst(pkt)
			if !ok {
				w.down.drop(dropInnerMalformed)
				continue
			}
			e := w.b.tab.byUE(dst)
			if e == nil {
				w.down.drop(dropNoSession)
				continue
			}
			// The header goes in the headroom in front of the packet.
			full := w.dlFull[i][:gtpuHeaderLen+size]
			putGPDUHeader(full, e.t.PeerTEID, size)
			e.ctr.packetsDown.Add(1)
			e.ctr.bytesDown.Add(uint64(size))
			w.down.c[statDownPackets].Add(1)
			w.down.c[statDownBytes].Add(uint64(size))
			_, failed := w.tx.queue(full, &e.peer)
			for ; failed > 0; failed-- {
				w.down.drop(dropSend)
			}
		}
		if w.tx.n > 0 {
			_, failed := w.tx.flush()
			for ; failed > 0; failed-- {
				w.down.drop(dropSend)
			}
		}
	}
}
