package breakout

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// tunEgress is the tun driver: one multi-queue Linux TUN device (IFF_TUN,
// IFF_NO_PI, IFF_MULTI_QUEUE), one queue per worker, routes for the UE
// pools, IP forwarding on, and an nftables table "rdv_<name>" with source
// NAT for packets from the pools. The device disappears with its last queue
// (it is not persistent), taking its routes; Close deletes the table.
type tunEgress struct {
	name   string
	queues []*tunQueue
	ns     netns.NsHandle // not open: the process's namespace
	nft    string         // nftables table name, "" if none
	log    *slog.Logger

	once sync.Once
	err  error
}

type tunQueue struct {
	f  *os.File
	rc syscall.RawConn

	// ReadPackets arguments and results, used by the bound readF.
	bufs  [][]byte
	sizes []int
	n     int
	rerr  error
	readF func(fd uintptr) bool
}

// openTUN creates the device and its configuration. It must run inside the
// target namespace (inNetNS); ns is kept for teardown.
func openTUN(cfg *Config, queues int, ns netns.NsHandle) (_ *tunEgress, err error) {
	t := &tunEgress{name: cfg.TUNName, ns: ns, log: cfg.Logger}
	defer func() {
		if err != nil {
			t.Close()
		}
	}()
	for i := 0; i < queues; i++ {
		fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err != nil {
			if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) {
				return nil, fmt.Errorf("%w: open /dev/net/tun: %w", ErrNeedNetAdmin, err)
			}
			return nil, fmt.Errorf("breakout: open /dev/net/tun: %w", err)
		}
		ifr, err := unix.NewIfreq(cfg.TUNName)
		if err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("breakout: tun %q: %w", cfg.TUNName, err)
		}
		ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI | unix.IFF_MULTI_QUEUE)
		if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
			unix.Close(fd)
			if errors.Is(err, unix.EPERM) {
				return nil, fmt.Errorf("%w: TUNSETIFF %q: %w", ErrNeedNetAdmin, cfg.TUNName, err)
			}
			return nil, fmt.Errorf("breakout: TUNSETIFF %q (in use by another process or not multi-queue?): %w", cfg.TUNName, err)
		}
		f := os.NewFile(uintptr(fd), "/dev/net/tun:"+cfg.TUNName)
		rc, err := f.SyscallConn()
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("breakout: tun %q: %w", cfg.TUNName, err)
		}
		q := &tunQueue{f: f, rc: rc}
		q.readF = q.read
		t.queues = append(t.queues, q)
	}

	h, err := netlink.NewHandle()
	if err != nil {
		return nil, fmt.Errorf("breakout: netlink: %w", err)
	}
	defer h.Close()
	link, err := h.LinkByName(cfg.TUNName)
	if err != nil {
		return nil, fmt.Errorf("breakout: netlink: link %q: %w", cfg.TUNName, err)
	}
	if err := h.LinkSetMTU(link, cfg.MTU); err != nil {
		return nil, fmt.Errorf("breakout: netlink: %q mtu %d: %w", cfg.TUNName, cfg.MTU, netAdmin(err))
	}
	v4, v6 := false, false
	for _, p := range cfg.Pools {
		v4, v6 = v4 || p.Addr().Is4(), v6 || p.Addr().Is6()
	}
	if !v6 {
		// No IPv6 pools: keep the kernel's router solicitations and MLD
		// reports off the device (they would be downlink noise).
		_ = writeSysctl("/proc/sys/net/ipv6/conf/"+cfg.TUNName+"/disable_ipv6", "1")
	}
	if cfg.TUNAddr.IsValid() {
		a := &netlink.Addr{IPNet: prefixNet(cfg.TUNAddr)}
		if err := h.AddrReplace(link, a); err != nil {
			return nil, fmt.Errorf("breakout: netlink: %q addr %v: %w", cfg.TUNName, cfg.TUNAddr, netAdmin(err))
		}
	}
	if err := h.LinkSetUp(link); err != nil {
		return nil, fmt.Errorf("breakout: netlink: %q up: %w", cfg.TUNName, netAdmin(err))
	}
	for _, p := range cfg.Pools {
		r := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: prefixNet(p), Scope: netlink.SCOPE_LINK}
		if err := h.RouteReplace(r); err != nil {
			return nil, fmt.Errorf("breakout: netlink: route %v dev %s: %w", p, cfg.TUNName, netAdmin(err))
		}
	}
	// The node forwards between the TUN and its internet-facing interface
	// (TS 29.061 §11.2: SGi is plain IP routing).
	if v4 {
		if err := writeSysctl("/proc/sys/net/ipv4/ip_forward", "1"); err != nil {
			return nil, fmt.Errorf("breakout: enable ipv4 forwarding: %w", err)
		}
	}
	if v6 {
		if err := writeSysctl("/proc/sys/net/ipv6/conf/all/forwarding", "1"); err != nil {
			return nil, fmt.Errorf("breakout: enable ipv6 forwarding: %w", err)
		}
	}
	if !cfg.NoNAT && len(cfg.Pools) > 0 {
		if err := t.setupNAT(cfg); err != nil {
			return nil, err
		}
	}
	return t, nil
}

func netAdmin(err error) error {
	if errors.Is(err, unix.EPERM) {
		return fmt.Errorf("%w: %w", ErrNeedNetAdmin, err)
	}
	return err
}

func writeSysctl(path, v string) error {
	cur, err := os.ReadFile(path)
	if err == nil && len(cur) > 0 && string(cur[:len(cur)-1]) == v {
		return nil
	}
	return os.WriteFile(path, []byte(v), 0o644)
}

func prefixNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func (t *tunEgress) nftConn() (*nftables.Conn, error) {
	if t.ns.IsOpen() {
		return nftables.New(nftables.WithNetNSFd(int(t.ns)))
	}
	return nftables.New()
}

// setupNAT installs table inet rdv_<Name> with a srcnat postrouting chain:
// for each pool, packets from it that do not go back out of the TUN device
// (and leave through NATInterface, if set) are masqueraded, or SNATed to
// NATAddr.
func (t *tunEgress) setupNAT(cfg *Config) error {
	c, err := t.nftConn()
	if err != nil {
		return fmt.Errorf("breakout: nftables: %w", netAdmin(err))
	}
	name := "rdv_" + cfg.Name
	tbl := &nftables.Table{Family: nftables.TableFamilyINet, Name: name}
	// A table left by a crashed run is replaced.
	c.AddTable(tbl)
	c.DelTable(tbl)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("breakout: nftables: table %s: %w", name, netAdmin(err))
	}
	tbl = c.AddTable(tbl)
	t.nft = name
	ch := c.AddChain(&nftables.Chain{
		Name: "postrouting", Table: tbl, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource,
	})
	for _, p := range cfg.Pools {
		var ex []expr.Any
		proto, off := byte(unix.NFPROTO_IPV4), uint32(12)
		if p.Addr().Is6() {
			proto, off = unix.NFPROTO_IPV6, 8
		}
		mask := net.CIDRMask(p.Bits(), p.Addr().BitLen())
		ex = append(ex,
			&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: uint32(len(mask))},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: uint32(len(mask)), Mask: mask, Xor: make([]byte, len(mask))},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: p.Addr().AsSlice()},
			&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: ifname(cfg.TUNName)},
		)
		if cfg.NATInterface != "" {
			ex = append(ex,
				&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname(cfg.NATInterface)},
			)
		}
		if cfg.NATAddr.IsValid() {
			if cfg.NATAddr.Is4() != p.Addr().Is4() {
				continue
			}
			fam := uint32(unix.NFPROTO_IPV4)
			if cfg.NATAddr.Is6() {
				fam = unix.NFPROTO_IPV6
			}
			ex = append(ex,
				&expr.Immediate{Register: 1, Data: cfg.NATAddr.AsSlice()},
				&expr.NAT{Type: expr.NATTypeSourceNAT, Family: fam, RegAddrMin: 1, Specified: true},
			)
		} else {
			ex = append(ex, &expr.Masq{})
		}
		c.AddRule(&nftables.Rule{Table: tbl, Chain: ch, Exprs: ex})
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("breakout: nftables: table %s: %w", name, netAdmin(err))
	}
	return nil
}

// ifname is an interface name as nftables compares it: IFNAMSIZ octets,
// zero-padded.
func ifname(s string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, s)
	return b
}

func (t *tunEgress) Queue(i int) EgressQueue { return t.queues[i] }

func (t *tunEgress) Close() error {
	t.once.Do(func() {
		var errs []error
		if t.nft != "" {
			c, err := t.nftConn()
			if err == nil {
				c.DelTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: t.nft})
				err = c.Flush()
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("breakout: nftables: delete table %s: %w", t.nft, err))
			}
		}
		for _, q := range t.queues {
			if err := q.f.Close(); err != nil {
				errs = append(errs, fmt.Errorf("breakout: close tun %s: %w", t.name, err))
			}
		}
		t.err = errors.Join(errs...)
	})
	return t.err
}

func (q *tunQueue) WritePacket(p []byte) error {
	_, err := q.f.Write(p)
	return err
}

func (q *tunQueue) read(fd uintptr) bool {
	i := 0
	for i < len(q.bufs) {
		n, err := unix.Read(int(fd), q.bufs[i])
		if err == unix.EINTR {
			continue
		}
		if err == unix.EAGAIN {
			break
		}
		if err != nil {
			q.rerr = err
			return true
		}
		q.sizes[i] = n
		i++
	}
	q.n = i
	return i > 0
}

func (q *tunQueue) ReadPackets(bufs [][]byte, sizes []int) (int, error) {
	q.bufs, q.sizes, q.n, q.rerr = bufs, sizes, 0, nil
	err := q.rc.Read(q.readF)
	q.bufs, q.sizes = nil, nil
	if err != nil {
		return 0, err
	}
	if q.rerr != nil && q.n == 0 {
		return 0, fmt.Errorf("breakout: tun read: %w", q.rerr)
	}
	return q.n, nil
}
