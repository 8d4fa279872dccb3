package breakout

import (
	"encoding/binary"
	"net/netip"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mmsghdr is struct mmsghdr of recvmmsg(2)/sendmmsg(2) on 64-bit Linux.
// x/sys/unix has no wrapper, and x/net/ipv4's ReadBatch allocates a
// *net.UDPAddr per received datagram (internal/socket parseInetAddr), so the
// fast path calls the system calls itself through the socket's RawConn.
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
	_   [4]byte
}

// sockaddr is a struct sockaddr_in or sockaddr_in6 in wire form.
type sockaddr struct {
	raw [unix.SizeofSockaddrInet6]byte
	len uint32
}

func makeSockaddr(ap netip.AddrPort) sockaddr {
	var s sockaddr
	a := ap.Addr()
	if a.Is4() {
		binary.NativeEndian.PutUint16(s.raw[0:2], unix.AF_INET)
		binary.BigEndian.PutUint16(s.raw[2:4], ap.Port())
		b := a.As4()
		copy(s.raw[4:8], b[:])
		s.len = unix.SizeofSockaddrInet4
		return s
	}
	binary.NativeEndian.PutUint16(s.raw[0:2], unix.AF_INET6)
	binary.BigEndian.PutUint16(s.raw[2:4], ap.Port())
	b := a.As16()
	copy(s.raw[8:24], b[:])
	s.len = unix.SizeofSockaddrInet6
	return s
}

// addrPort decodes raw; IPv4-mapped IPv6 addresses are unmapped.
func (s *sockaddr) addrPort() netip.AddrPort {
	switch binary.NativeEndian.Uint16(s.raw[0:2]) {
	case unix.AF_INET:
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(s.raw[4:8])), binary.BigEndian.Uint16(s.raw[2:4]))
	case unix.AF_INET6:
		return netip.AddrPortFrom(netip.AddrFrom16([16]byte(s.raw[8:24])).Unmap(), binary.BigEndian.Uint16(s.raw[2:4]))
	}
	return netip.AddrPort{}
}

// mmsgBatch is a reusable recvmmsg/sendmmsg batch over one socket. Its
// buffers, headers and bound functions are allocated once, so a call
// allocates nothing. Not safe for concurrent use.
type mmsgBatch struct {
	rc    syscall.RawConn
	hdrs  []mmsghdr
	iovs  []unix.Iovec
	names []sockaddr
	bufs  [][]byte // receive: full-capacity buffers; send: the datagrams
	over  [][]byte // receive only, optional: second iovec for long datagrams
	n     int      // send: datagrams queued; receive: datagrams received

	// syscall results, set by the bound functions.
	res   int
	errno syscall.Errno
	off   int
	recvF func(fd uintptr) bool
	sendF func(fd uintptr) bool
}

// newMmsgBatch returns a batch of size datagrams. For receiving, bufSize
// is each datagram's buffer; overSize > 0 adds a second, separate buffer
// per datagram for the rare long ones, so the buffers the fast path
// touches stay compact (and in the cache).
func newMmsgBatch(rc syscall.RawConn, size, bufSize, overSize int) *mmsgBatch {
	iovPer := 1
	if overSize > 0 {
		iovPer = 2
	}
	b := &mmsgBatch{
		rc:    rc,
		hdrs:  make([]mmsghdr, size),
		iovs:  make([]unix.Iovec, size*iovPer),
		names: make([]sockaddr, size),
		bufs:  make([][]byte, size),
	}
	if bufSize > 0 {
		mem := make([]byte, size*bufSize)
		for i := range b.bufs {
			b.bufs[i] = mem[i*bufSize : (i+1)*bufSize : (i+1)*bufSize]
		}
	}
	if overSize > 0 {
		mem := make([]byte, size*overSize)
		b.over = make([][]byte, size)
		for i := range b.over {
			b.over[i] = mem[i*overSize : (i+1)*overSize : (i+1)*overSize]
		}
	}
	for i := range b.hdrs {
		b.hdrs[i].hdr.Iov = &b.iovs[i*iovPer]
		b.hdrs[i].hdr.Iovlen = uint64(iovPer)
		b.hdrs[i].hdr.Name = &b.names[i].raw[0]
	}
	b.recvF = b.recvmmsg
	b.sendF = b.sendmmsg
	return b
}

func (b *mmsgBatch) recvmmsg(fd uintptr) bool {
	n, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&b.hdrs[0])), uintptr(len(b.hdrs)), unix.MSG_DONTWAIT, 0, 0)
	for e == unix.EINTR {
		n, _, e = unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&b.hdrs[0])), uintptr(len(b.hdrs)), unix.MSG_DONTWAIT, 0, 0)
	}
	if e == unix.EAGAIN {
		return false
	}
	b.res, b.errno = int(n), e
	return true
}

// recv blocks until at least one datagram arrives and returns how many did;
// datagram i is b.bufs[i][:b.hdrs[i].len] from b.names[i].
func (b *mmsgBatch) recv() (int, error) {
	for i := range b.hdrs {
		if b.over != nil {
			b.iovs[2*i].Base = &b.bufs[i][0]
			b.iovs[2*i].SetLen(len(b.bufs[i]))
			b.iovs[2*i+1].Base = &b.over[i][0]
			b.iovs[2*i+1].SetLen(len(b.over[i]))
		} else {
			b.iovs[i].Base = &b.bufs[i][0]
			b.iovs[i].SetLen(len(b.bufs[i]))
		}
		b.hdrs[i].hdr.Namelen = unix.SizeofSockaddrInet6
		b.hdrs[i].hdr.Flags = 0
		b.hdrs[i].len = 0
	}
	b.res, b.errno = 0, 0
	if err := b.rc.Read(b.recvF); err != nil {
		return 0, err
	}
	if b.errno != 0 {
		return 0, os.NewSyscallError("recvmmsg", b.errno)
	}
	b.n = b.res
	for i := 0; i < b.n; i++ {
		b.names[i].len = b.hdrs[i].hdr.Namelen
	}
	return b.res, nil
}

// datagram returns received datagram i as one slice: in place if it fit
// the first buffer, else assembled into scratch (rare; no allocation).
func (b *mmsgBatch) datagram(i int, scratch []byte) []byte {
	n := int(b.hdrs[i].len)
	first := len(b.bufs[i])
	if n <= first || b.over == nil {
		return b.bufs[i][:min(n, first)]
	}
	copy(scratch, b.bufs[i])
	m := copy(scratch[first:], b.over[i][:n-first])
	return scratch[:first+m]
}

// queue adds datagram p (retained until flush) to the send batch; it
// flushes first if the batch is full.
func (b *mmsgBatch) queue(p []byte, to *sockaddr) (sent, failed int) {
	if b.n == len(b.hdrs) {
		sent, failed = b.flush()
	}
	i := b.n
	b.bufs[i] = p
	b.names[i] = *to
	b.n++
	return sent, failed
}

func (b *mmsgBatch) sendmmsg(fd uintptr) bool {
	n, _, e := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&b.hdrs[b.off])), uintptr(b.n-b.off), unix.MSG_DONTWAIT, 0, 0)
	for e == unix.EINTR {
		n, _, e = unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&b.hdrs[b.off])), uintptr(b.n-b.off), unix.MSG_DONTWAIT, 0, 0)
	}
	if e == unix.EAGAIN {
		return false
	}
	b.res, b.errno = int(n), e
	return true
}

// flush sends every queued datagram; a datagram the kernel refuses is
// skipped and counted in failed. It returns early only if the socket is
// closed.
func (b *mmsgBatch) flush() (sent, failed int) {
	for i := 0; i < b.n; i++ {
		b.iovs[i].Base = &b.bufs[i][0]
		b.iovs[i].SetLen(len(b.bufs[i]))
		b.hdrs[i].hdr.Namelen = b.names[i].len
		b.hdrs[i].hdr.Flags = 0
	}
	b.off = 0
	for b.off < b.n {
		b.res, b.errno = 0, 0
		if err := b.rc.Write(b.sendF); err != nil {
			failed += b.n - b.off
			break
		}
		if b.errno != 0 {
			// sendmmsg reports an error only for the first datagram.
			failed++
			b.off++
			continue
		}
		sent += b.res
		b.off += b.res
	}
	for i := 0; i < b.n; i++ {
		b.bufs[i] = nil
	}
	b.n = 0
	return sent, failed
}
