package netns

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"

	"github.com/vishvananda/netns"
)

// run runs a command (ip, nft, initdb) and returns its combined output in
// the error.
func run(ctx context.Context, stdin string, name string, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("netns: %s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}

// ip runs ip(8) with the given arguments.
func ip(ctx context.Context, args ...string) error { return run(ctx, "", "ip", args...) }

// startIn starts cmd with its network namespace set to the named one. The
// child is forked from an OS thread switched into that namespace; the
// thread is never switched back, it exits with its goroutine (a goroutine
// that ends locked takes its thread with it), so no other goroutine ever
// runs in the wrong namespace.
func startIn(nsName string, cmd *exec.Cmd) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked, see above
		h, err := netns.GetFromName(nsName)
		if err != nil {
			errc <- fmt.Errorf("netns: open %s: %w", nsName, err)
			return
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			errc <- fmt.Errorf("netns: enter %s: %w", nsName, err)
			return
		}
		if err := cmd.Start(); err != nil {
			errc <- fmt.Errorf("netns: start %s in %s: %w", cmd.Path, nsName, err)
			return
		}
		errc <- nil
	}()
	return <-errc
}

// listNamespaces returns the named namespaces with our prefix.
func listNamespaces() ([]string, error) {
	ents, err := os.ReadDir("/run/netns")
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("netns: list namespaces: %w", err)
	}
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), nsPrefix) {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// removeAll deletes every namespace with our prefix (their veths and the
// bridge go with them; the host end of the host↔fabric veth goes with its
// peer) and the host link if it is still there.
func removeAll(ctx context.Context) error {
	var errs []error
	names, err := listNamespaces()
	if err != nil {
		errs = append(errs, err)
	}
	for _, n := range names {
		if err := ip(ctx, "netns", "delete", n); err != nil {
			errs = append(errs, err)
		}
	}
	if _, err := os.Stat("/sys/class/net/" + hostLink); err == nil {
		if err := ip(ctx, "link", "delete", hostLink); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// buildFabric creates the fabric namespace with its bridge, the host↔fabric
// veth, and one namespace per member joined to the bridge. No member gets a
// default route: lab traffic never leaves the lab subnet.
func buildFabric(ctx context.Context) error {
	bits := fmt.Sprint(subnet.Bits())
	steps := [][]string{
		{"netns", "add", fabricNS},
		{"-n", fabricNS, "link", "set", "lo", "up"},
		{"-n", fabricNS, "link", "add", bridgeName, "type", "bridge"},
		{"-n", fabricNS, "link", "set", bridgeName, "up"},
		{"link", "add", hostLink, "type", "veth", "peer", "name", "v-host", "netns", fabricNS},
		{"-n", fabricNS, "link", "set", "v-host", "master", bridgeName, "up"},
		{"addr", "add", hostAddr.String() + "/" + bits, "dev", hostLink},
		{"link", "set", hostLink, "up"},
	}
	for _, m := range allMembers() {
		steps = append(steps,
			[]string{"netns", "add", m.ns()},
			[]string{"-n", m.ns(), "link", "set", "lo", "up"},
			[]string{"-n", fabricNS, "link", "add", m.fabricLink(), "type", "veth", "peer", "name", innerLink, "netns", m.ns()},
			[]string{"-n", fabricNS, "link", "set", m.fabricLink(), "master", bridgeName, "up"},
			[]string{"-n", m.ns(), "addr", "add", m.addr.String() + "/" + bits, "dev", innerLink},
			[]string{"-n", m.ns(), "link", "set", innerLink, "up"},
		)
	}
	for _, s := range steps {
		if err := ip(ctx, s...); err != nil {
			return err
		}
	}
	// The breakouts route UE traffic from their TUN out of eth0.
	for _, m := range nodeMembers {
		if err := ip(ctx, "netns", "exec", m.ns(), "sysctl", "-qw", "net.ipv4.ip_forward=1"); err != nil {
			return err
		}
	}
	return nil
}

// partitionRules drops all traffic between self and the other nodes.
func partitionRules(self member) string {
	var peers []string
	for _, m := range nodeMembers {
		if m.name != self.name {
			peers = append(peers, m.addr.String())
		}
	}
	set := "{ " + strings.Join(peers, ", ") + " }"
	return fmt.Sprintf(`table inet %[1]s {
	chain in { type filter hook input priority -10; policy accept; ip saddr %[2]s drop; }
	chain out { type filter hook output priority -10; policy accept; ip daddr %[2]s drop; }
}
`, partitionTable, set)
}
