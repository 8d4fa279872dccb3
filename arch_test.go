// The architecture test: the dependency direction of DESIGN.md §3, enforced
// from `go list` output so that a violation fails CI rather than review.
package rendezvous_test

import (
	"bytes"
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const module = "github.com/rendezvous-core/rendezvous"

type listedPackage struct {
	ImportPath string
	Name       string
	Doc        string
	Dir        string
	GoFiles    []string
	Imports    []string
	Deps       []string
	Standard   bool
}

func listPackages(t *testing.T) []listedPackage {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps=false", "-json", "./...")
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	var pkgs []listedPackage
	dec := json.NewDecoder(&out)
	for dec.More() {
		var p listedPackage
		if err := dec.Decode(&p); err != nil {
			t.Fatalf("decode go list output: %v", err)
		}
		if len(p.GoFiles) > 0 {
			pkgs = append(pkgs, p)
		}
	}
	if len(pkgs) == 0 {
		t.Fatal("go list found no packages")
	}
	return pkgs
}

func rel(path string) string {
	return strings.TrimPrefix(strings.TrimPrefix(path, module), "/")
}

func under(path, prefix string) bool {
	r := rel(path)
	return r == prefix || strings.HasPrefix(r, prefix+"/")
}

// testSupport reports whether p is a test-helper package (named like
// rafttest or dnstest): it serves tests only, so it may import testing and
// read the environment.
func testSupport(p listedPackage) bool { return strings.HasSuffix(p.Name, "test") }

func own(path string) bool { return path == module || strings.HasPrefix(path, module+"/") }

// isThirdParty reports whether an import path is a module outside the
// standard library and outside this module.
func isThirdParty(path string) bool {
	first, _, _ := strings.Cut(path, "/")
	return strings.Contains(first, ".") && !own(path)
}

// TestPureCore: topology and federation/steering decide from data alone — no
// networking, files, flags, clocks or third-party modules (DESIGN.md §3).
func TestPureCore(t *testing.T) {
	bannedDeps := map[string]bool{"net": true, "net/http": true, "os/exec": true}
	bannedImports := map[string]bool{"os": true, "flag": true, "syscall": true, "math/rand": true, "math/rand/v2": true}
	for _, p := range listPackages(t) {
		if !(under(p.ImportPath, "topology") || under(p.ImportPath, "federation/steering")) {
			continue
		}
		if strings.Contains(rel(p.ImportPath), "/internal/") && p.Name == "main" {
			continue // generators run at `go generate` time, not in the product
		}
		for _, d := range p.Deps {
			if bannedDeps[d] {
				t.Errorf("%s depends on %q; it must stay pure (no I/O)", rel(p.ImportPath), d)
			}
			if isThirdParty(d) {
				t.Errorf("%s depends on third-party %q; it must use the standard library only", rel(p.ImportPath), d)
			}
			if own(d) && !under(d, "topology") {
				t.Errorf("%s imports %s; only topology is allowed", rel(p.ImportPath), rel(d))
			}
		}
		for _, imp := range p.Imports {
			if bannedImports[imp] {
				t.Errorf("%s imports %q; it must stay pure (no I/O, no randomness)", rel(p.ImportPath), imp)
			}
		}
		forEachSelector(t, p, func(path, pkg, name string) {
			if pkg == "time" && (name == "Now" || name == "Since" || name == "Until" || name == "After" ||
				name == "Sleep" || name == "NewTimer" || name == "NewTicker" || name == "Tick" || name == "AfterFunc") {
				t.Errorf("%s reads the clock (time.%s); time must be an input", path, name)
			}
		})
	}
}

// forEachSelector calls fn for every pkg.Name selector in p's production files.
func forEachSelector(t *testing.T, p listedPackage, fn func(path, pkg, name string)) {
	t.Helper()
	for _, f := range p.GoFiles {
		path := filepath.Join(p.Dir, f)
		file, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
		if err != nil {
			t.Fatalf("parse %s: %v", path, err)
		}
		ast.Inspect(file, func(n ast.Node) bool {
			if sel, ok := n.(*ast.SelectorExpr); ok {
				if id, ok := sel.X.(*ast.Ident); ok {
					fn(path, id.Name, sel.Sel.Name)
				}
			}
			return true
		})
	}
}

// TestDirection: topology ← federation/* ← region/*, breakout ← cmd/*;
// nothing imports cmd/ or e2e/; the region composition root is imported only
// by cmd/, lab/ and e2e/; the visited-network emulator imports only topology.
func TestDirection(t *testing.T) {
	for _, p := range listPackages(t) {
		from := rel(p.ImportPath)
		for _, imp := range p.Imports {
			if !own(imp) {
				continue
			}
			to := rel(imp)
			bad := ""
			switch {
			case strings.HasPrefix(to, "cmd/") || to == "cmd":
				bad = "nothing imports cmd/"
			case strings.HasPrefix(to, "e2e"):
				bad = "nothing imports e2e/"
			case strings.HasSuffix(to, "test") && !testSupport(p):
				bad = "test-helper packages serve tests only"
			case under(p.ImportPath, "topology") && !under(imp, "topology"):
				bad = "topology imports nothing of ours"
			case under(p.ImportPath, "federation") && !(under(imp, "topology") || under(imp, "federation")):
				bad = "federation/* imports only topology and federation/*"
			case under(p.ImportPath, "breakout") && !(under(imp, "topology") || under(imp, "breakout")):
				bad = "breakout imports only topology"
			case under(p.ImportPath, "roamsim") && !(under(imp, "topology") || under(imp, "roamsim")):
				bad = "roamsim is an outside peer: it imports only topology"
			case to == "region" && !(strings.HasPrefix(from, "cmd/") || strings.HasPrefix(from, "e2e") || under(p.ImportPath, "lab")):
				bad = "only cmd/, lab/ and e2e/ import the region composition root"
			case under(imp, "lab") && !(strings.HasPrefix(from, "cmd/") || strings.HasPrefix(from, "e2e") || under(p.ImportPath, "lab")):
				bad = "only cmd/ and e2e/ import the lab"
			}
			if bad != "" {
				t.Errorf("%s imports %s: %s", from, to, bad)
			}
		}
	}
}

// TestNoTestingInProduction: production code never imports testing, and
// only cmd/ reads flags.
func TestNoTestingInProduction(t *testing.T) {
	for _, p := range listPackages(t) {
		if testSupport(p) {
			continue
		}
		for _, imp := range p.Imports {
			if imp == "testing" || strings.HasPrefix(imp, "testing/") {
				t.Errorf("%s imports %s in production code", rel(p.ImportPath), imp)
			}
			if imp == "flag" && !strings.HasPrefix(rel(p.ImportPath), "cmd/") {
				t.Errorf("%s imports flag; only cmd/ reads flags", rel(p.ImportPath))
			}
		}
	}
}

// TestEnvOnlyInCmd: only cmd/ reads the environment (os.Getenv,
// os.LookupEnv, os.Environ) in production code.
func TestEnvOnlyInCmd(t *testing.T) {
	for _, p := range listPackages(t) {
		if strings.HasPrefix(rel(p.ImportPath), "cmd/") || testSupport(p) || (strings.Contains(rel(p.ImportPath), "/internal/") && p.Name == "main") {
			continue
		}
		forEachSelector(t, p, func(path, pkg, name string) {
			if pkg == "os" && (name == "Getenv" || name == "LookupEnv" || name == "Environ") {
				t.Errorf("%s reads the environment (os.%s); only cmd/ may", path, name)
			}
		})
	}
}

// TestPackageDocs: every package says what it is and who may import it.
func TestPackageDocs(t *testing.T) {
	for _, p := range listPackages(t) {
		if p.Doc == "" {
			t.Errorf("%s has no package doc comment", rel(p.ImportPath))
			continue
		}
		if p.Name == "main" || strings.Contains(rel(p.ImportPath), "/internal/") {
			continue
		}
		if !strings.Contains(strings.ToLower(readDoc(t, p)), "import") {
			t.Errorf("%s: package doc does not say who may import it", rel(p.ImportPath))
		}
	}
}

func readDoc(t *testing.T, p listedPackage) string {
	t.Helper()
	var b strings.Builder
	for _, f := range p.GoFiles {
		data, err := os.ReadFile(filepath.Join(p.Dir, f))
		if err != nil {
			t.Fatal(err)
		}
		file, err := parser.ParseFile(token.NewFileSet(), f, data, parser.ParseComments|parser.PackageClauseOnly)
		if err != nil {
			t.Fatal(err)
		}
		if file.Doc != nil {
			b.WriteString(file.Doc.Text())
		}
	}
	return b.String()
}
