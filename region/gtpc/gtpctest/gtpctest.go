// Package gtpctest runs GTP-C interop tests against real peers: private
// network namespaces (prefix rdvgtpc-), dumpcap captures checked by tshark
// (notes/peers.md §3), and the go-gtp example MME/SGW built from this
// module. It is used only by the tests of region/gtpc, region/pgw and
// region/ggsn; it does not import testing.
package gtpctest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Missing returns why interop tests cannot run here: not root, or the
// named tools are not on PATH. Empty means they can.
func Missing(tools ...string) []string {
	var out []string
	if os.Geteuid() != 0 {
		out = append(out, "root (network namespaces)")
	}
	for _, t := range append([]string{"ip"}, tools...) {
		if _, err := exec.LookPath(t); err != nil {
			out = append(out, t)
		}
	}
	return out
}

var nsSeq atomic.Int32

// Netns is a private network namespace with its loopback up.
type Netns struct {
	Name string
}

// NewNetns creates rdvgtpc-<pid>-<n>-<tag>.
func NewNetns(tag string) (*Netns, error) {
	name := fmt.Sprintf("rdvgtpc-%d-%d-%s", os.Getpid(), nsSeq.Add(1), tag)
	if len(name) > 40 {
		name = name[:40]
	}
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("gtpctest: ip netns add %s: %v: %s", name, err, out)
	}
	if out, err := exec.Command("ip", "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		exec.Command("ip", "netns", "del", name).Run()
		return nil, fmt.Errorf("gtpctest: lo up in %s: %v: %s", name, err, out)
	}
	return &Netns{Name: name}, nil
}

// Close deletes the namespace.
func (n *Netns) Close() error {
	if out, err := exec.Command("ip", "netns", "del", n.Name).CombinedOutput(); err != nil {
		return fmt.Errorf("gtpctest: ip netns del %s: %v: %s", n.Name, err, out)
	}
	return nil
}

// Do runs f on an OS thread switched into the namespace: sockets f creates
// live there for good, whichever goroutine uses them later.
func (n *Netns) Do(f func() error) error {
	runtime.LockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("gtpctest: %w", err)
	}
	defer orig.Close()
	target, err := os.Open("/run/netns/" + n.Name)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("gtpctest: %w", err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("gtpctest: setns %s: %w", n.Name, err)
	}
	ferr := f()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		// Leave the thread locked: it dies with the goroutine.
		return fmt.Errorf("gtpctest: setns back: %w", err)
	}
	runtime.UnlockOSThread()
	return ferr
}

// Command returns cmd running inside the namespace, in dir.
func (n *Netns) Command(ctx context.Context, dir string, name string, args ...string) *exec.Cmd {
	c := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
	c.Dir = dir
	c.Cancel = func() error { return c.Process.Signal(syscall.SIGTERM) }
	c.WaitDelay = 30 * time.Second
	return c
}

// Capture is a running dumpcap on the namespace's loopback.
type Capture struct {
	cmd    *exec.Cmd
	Path   string
	stderr *bytes.Buffer
}

// StartCapture starts dumpcap with a capture filter and waits until it is
// capturing (peers.md §3: "Capturing on" plus a moment).
func (n *Netns) StartCapture(path, filter string) (*Capture, error) {
	cmd := exec.Command("ip", "netns", "exec", n.Name, "dumpcap", "-q", "-i", "lo", "-f", filter, "-w", path)
	pr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("gtpctest: dumpcap: %w", err)
	}
	c := &Capture{cmd: cmd, Path: path, stderr: &bytes.Buffer{}}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pr)
		once := false
		for sc.Scan() {
			c.stderr.WriteString(sc.Text() + "\n")
			if !once && strings.Contains(sc.Text(), "Capturing on") {
				once = true
				close(ready)
			}
		}
		if !once {
			close(ready)
		}
	}()
	select {
	case <-ready:
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		cmd.Wait()
		return nil, errors.New("gtpctest: dumpcap did not start")
	}
	time.Sleep(1500 * time.Millisecond)
	return c, nil
}

// Stop flushes and closes the capture (SIGINT).
func (c *Capture) Stop() error {
	time.Sleep(500 * time.Millisecond) // let the last packets reach the ring
	c.cmd.Process.Signal(os.Interrupt)
	done := make(chan error, 1)
	go func() { done <- c.cmd.Wait() }()
	select {
	case <-done:
		return nil
	case <-time.After(15 * time.Second):
		c.cmd.Process.Kill()
		return errors.New("gtpctest: dumpcap did not stop")
	}
}

// Tshark runs tshark on the capture and returns its non-empty output lines.
func Tshark(path string, args ...string) ([]string, error) {
	out, err := exec.Command("tshark", append([]string{"-r", path}, args...)...).Output()
	if err != nil {
		return nil, fmt.Errorf("gtpctest: tshark %v: %w", args, err)
	}
	var lines []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.TrimSpace(l) != "" {
			lines = append(lines, l)
		}
	}
	return lines, nil
}

// Problems runs the checks of peers.md §3 and returns the offending lines
// (pass = none): dissector errors, header length ≠ UDP length for both GTP
// versions, and requests without a response (Echo, Create/Update/Delete
// PDP Context, Create/Modify/Delete Session). scope, if not empty, is a
// display filter that limits the response checks (e.g. to our addresses).
func Problems(path, scope string) ([]string, error) {
	and := ""
	if scope != "" {
		and = " && (" + scope + ")"
	}
	checks := [][]string{
		{"-Y", `_ws.malformed || _ws.expert.severity >= "error"`, "-T", "fields", "-e", "frame.number", "-e", "_ws.col.Protocol", "-e", "_ws.expert.message"},
		{"-Y", `gtpv2 && udp.length != gtpv2.msg_length + 12`},
		{"-Y", `gtp && udp.length != gtp.length + 16`},
		{"-2", "-Y", `(gtp.message==1 || gtp.message==0x10 || gtp.message==0x12 || gtp.message==0x14) && !gtp.response_in` + and},
		{"-2", "-Y", `(gtpv2.message_type==1 || gtpv2.message_type==32 || gtpv2.message_type==34 || gtpv2.message_type==36) && !gtpv2.response_in` + and},
	}
	var bad []string
	for _, c := range checks {
		lines, err := Tshark(path, c...)
		if err != nil {
			return nil, err
		}
		for _, l := range lines {
			bad = append(bad, fmt.Sprintf("%v: %s", c, l))
		}
	}
	return bad, nil
}

// Count returns the number of packets matching a display filter.
func Count(path, filter string, twoPass bool) (int, error) {
	args := []string{"-Y", filter, "-T", "fields", "-e", "frame.number"}
	if twoPass {
		args = append([]string{"-2"}, args...)
	}
	lines, err := Tshark(path, args...)
	return len(lines), err
}

// BuildGoGTPExamples builds go-gtp's examples/mme and examples/sgw (the
// module's pinned v0.8.12) into dir, offline from the module cache
// (peers.md §4).
func BuildGoGTPExamples(dir string) error {
	gomodcache, err := exec.Command("go", "env", "GOMODCACHE").Output()
	if err != nil {
		return fmt.Errorf("gtpctest: go env: %w", err)
	}
	build := func(env ...string) ([]byte, error) {
		cmd := exec.Command("go", "build", "-o", dir+"/",
			"github.com/wmnsk/go-gtp/examples/mme", "github.com/wmnsk/go-gtp/examples/sgw")
		cmd.Env = append(os.Environ(), env...)
		return cmd.CombinedOutput()
	}
	// Offline from the module cache first; on a fresh machine whose cache
	// lacks a module the examples need, through the configured proxy.
	if _, err := build("GOSUMDB=off", "GOPROXY=file://"+strings.TrimSpace(string(gomodcache))+"/cache/download"); err == nil {
		return nil
	}
	if out, err := build(); err != nil {
		return fmt.Errorf("gtpctest: build go-gtp examples: %v: %s", err, out)
	}
	return nil
}
