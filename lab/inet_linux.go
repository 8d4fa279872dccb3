package lab

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Internet is the lab's stand-in for the internet: a network namespace the
// lab creates, joined to the host by a veth pair, with a UDP echo server.
// The breakouts masquerade UE traffic out of the host end of the veth, so the
// server sees it coming from the breakout's NAT address (DESIGN.md §2 "User
// data"). Traffic never leaves the machine.
type Internet struct {
	// Target is the server's address (ICMP echo and UDP echo on EchoPort).
	Target netip.Addr
	// HostIface is the host end of the veth: the breakouts' NAT interface.
	HostIface string
	// HostAddr is the host end's address: what the server sees as source.
	HostAddr netip.Addr

	name      string
	echo      *net.UDPConn
	wg        sync.WaitGroup
	oldFwd    string
	closeOnce sync.Once
	closeErr  error
}

// EchoPort is the UDP echo port of the lab's internet target (RFC 862).
const EchoPort = 7

// internetPlan names the namespace, links and addresses of one lab.
type internetPlan struct {
	ns, host, peer string
	hostAddr       netip.Prefix
	peerAddr       netip.Prefix
}

func defaultInternetPlan() internetPlan {
	// 198.18.0.0/15 is reserved for network benchmarking (RFC 2544): it is
	// never routed on the internet, so nothing here can leak out.
	return internetPlan{
		ns: "rdv-lab-inet", host: "rdvlab-inet0", peer: "rdvlab-inet1",
		hostAddr: netip.MustParsePrefix("198.18.0.1/30"),
		peerAddr: netip.MustParsePrefix("198.18.0.2/30"),
	}
}

// StartInternet creates the internet namespace, the veth pair and the echo
// server. It needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN).
func StartInternet(p internetPlan) (_ *Internet, err error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("lab: the internet namespace needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN)")
	}
	in := &Internet{Target: p.peerAddr.Addr(), HostIface: p.host, HostAddr: p.hostAddr.Addr(), name: p.ns}
	// A leftover from a lab that was killed: remove it first.
	_ = netns.DeleteNamed(p.ns)
	if l, err := netlink.LinkByName(p.host); err == nil {
		_ = netlink.LinkDel(l)
	}
	defer func() {
		if err != nil {
			_ = in.Close()
		}
	}()

	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	host, err := netns.Get()
	if err != nil {
		return nil, fmt.Errorf("lab: current netns: %w", err)
	}
	defer host.Close()
	ns, err := netns.NewNamed(p.ns) // switches this thread into it
	if err != nil {
		return nil, fmt.Errorf("lab: create netns %s: %w", p.ns, err)
	}
	defer ns.Close()
	if err := setupInside(p); err != nil {
		_ = netns.Set(host)
		return nil, err
	}
	if err := netns.Set(host); err != nil {
		return nil, fmt.Errorf("lab: back to host netns: %w", err)
	}

	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: p.host}, PeerName: p.peer}
	if err := netlink.LinkAdd(veth); err != nil {
		return nil, fmt.Errorf("lab: veth %s: %w", p.host, err)
	}
	peer, err := netlink.LinkByName(p.peer)
	if err != nil {
		return nil, fmt.Errorf("lab: veth peer: %w", err)
	}
	if err := netlink.LinkSetNsFd(peer, int(ns)); err != nil {
		return nil, fmt.Errorf("lab: move %s into %s: %w", p.peer, p.ns, err)
	}
	hl, err := netlink.LinkByName(p.host)
	if err != nil {
		return nil, err
	}
	if err := netlink.AddrAdd(hl, &netlink.Addr{IPNet: prefixNet(p.hostAddr)}); err != nil {
		return nil, fmt.Errorf("lab: address %v: %w", p.hostAddr, err)
	}
	if err := netlink.LinkSetUp(hl); err != nil {
		return nil, err
	}
	// Configure the peer end from inside, and open the echo socket there:
	// a socket stays in the namespace it was created in.
	if err := netns.Set(ns); err != nil {
		return nil, err
	}
	err = func() error {
		pl, err := netlink.LinkByName(p.peer)
		if err != nil {
			return err
		}
		if err := netlink.AddrAdd(pl, &netlink.Addr{IPNet: prefixNet(p.peerAddr)}); err != nil {
			return fmt.Errorf("lab: address %v: %w", p.peerAddr, err)
		}
		if err := netlink.LinkSetUp(pl); err != nil {
			return err
		}
		echo, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(p.peerAddr.Addr(), EchoPort)))
		if err != nil {
			return fmt.Errorf("lab: echo server: %w", err)
		}
		in.echo = echo
		return nil
	}()
	if serr := netns.Set(host); serr != nil {
		return nil, serr
	}
	if err != nil {
		return nil, err
	}
	// The host forwards between the breakouts' TUNs and the veth.
	old, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
	if err != nil {
		return nil, fmt.Errorf("lab: read ip_forward: %w", err)
	}
	in.oldFwd = strings.TrimSpace(string(old))
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644); err != nil {
		return nil, fmt.Errorf("lab: enable ip_forward: %w", err)
	}
	in.wg.Add(1)
	go in.serveEcho()
	return in, nil
}

func setupInside(p internetPlan) error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("lab: lo in %s: %w", p.ns, err)
	}
	return netlink.LinkSetUp(lo)
}

func (in *Internet) serveEcho() {
	defer in.wg.Done()
	buf := make([]byte, 65535)
	for {
		n, from, err := in.echo.ReadFromUDPAddrPort(buf)
		if err != nil {
			return // closed
		}
		_, _ = in.echo.WriteToUDPAddrPort(buf[:n], from)
	}
}

// Close stops the echo server and removes the namespace and the veth. It
// is idempotent.
func (in *Internet) Close() error {
	in.closeOnce.Do(func() {
		var errs []error
		if in.echo != nil {
			errs = append(errs, in.echo.Close())
			in.wg.Wait()
		}
		if l, err := netlink.LinkByName(in.HostIface); err == nil {
			errs = append(errs, netlink.LinkDel(l))
		}
		if err := netns.DeleteNamed(in.name); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
		if in.oldFwd != "" && in.oldFwd != "1" {
			errs = append(errs, os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte(in.oldFwd), 0o644))
		}
		in.closeErr = errors.Join(errs...)
	})
	return in.closeErr
}

func prefixNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
