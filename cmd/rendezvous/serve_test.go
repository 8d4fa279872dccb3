package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestServeBadFederationFile: a malformed federation file is a usage error
// (exit 2) that names the file, the line and the field.
func TestServeBadFederationFile(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "fed.yaml")
	data, err := os.ReadFile("../../examples/federation.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// Line of the first "gtpu:" key: replace its port by an unknown key.
	lines := strings.Split(string(data), "\n")
	line := 0
	for i, l := range lines {
		if strings.Contains(l, "gtpu: 2152") {
			lines[i] = strings.Replace(l, "gtpu: 2152", "gtpx: 2152", 1)
			line = i + 1
			break
		}
	}
	if line == 0 {
		t.Fatal("no gtpu line in the example")
	}
	if err := os.WriteFile(bad, []byte(strings.Join(lines, "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := newServeCmd()
	cmd.SetArgs([]string{"--config", bad, "--node", "jp"})
	cmd.SilenceErrors, cmd.SilenceUsage = true, true
	err = cmd.Execute()
	var ue usageError
	if !errors.As(err, &ue) {
		t.Fatalf("err = %v, want a usage error", err)
	}
	msg := err.Error()
	want := bad + ":" + strconv.Itoa(line) + ":"
	if !strings.Contains(msg, want) || !strings.Contains(msg, "gtpx") {
		t.Fatalf("error %q does not name %s and the field gtpx", msg, want)
	}
}

// TestExitCodeTwo runs the real binary: a malformed file exits with 2.
func TestExitCodeTwo(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "rendezvous")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	bad := filepath.Join(t.TempDir(), "fed.yaml")
	if err := os.WriteFile(bad, []byte("regions:\n  - id: XX\n    bogus: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", "--config", bad, "--node", "jp")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Fatalf("exit = %v, want 2; output:\n%s", err, out)
	}
	if !strings.Contains(string(out), bad+":3:") {
		t.Fatalf("output does not name line 3 of %s:\n%s", bad, out)
	}
}
