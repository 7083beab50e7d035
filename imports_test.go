package submariner_test

import (
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"strings"
	"testing"
)

// TestImportRules enforces the import rules of DESIGN.md section 4:
//   - agents/netkit imports nothing from Kubernetes or CoreDNS;
//   - only plugin/ and coredns-build/ import CoreDNS;
//   - plugin/ and agents/ do not import each other.
func TestImportRules(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("skipped: the go command is not on PATH")
	}
	const mod = "github.com/submariner-go/submariner/"
	out, err := exec.Command("go", "list", "-e", "-json=ImportPath,Deps,TestImports,XTestImports", "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	type pkg struct {
		ImportPath                      string
		Deps, TestImports, XTestImports []string
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	checked := 0
	for {
		var p pkg
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		checked++
		rel := strings.TrimPrefix(p.ImportPath, mod)
		imports := append(append(p.Deps, p.TestImports...), p.XTestImports...)
		for _, dep := range imports {
			depRel, ours := strings.CutPrefix(dep, mod)
			switch {
			case under(rel, "agents/netkit") && (strings.HasPrefix(dep, "k8s.io/") || strings.HasPrefix(dep, "sigs.k8s.io/") || isCoreDNS(dep)):
				t.Errorf("%s imports %s: agents/netkit must not import Kubernetes or CoreDNS", rel, dep)
			case isCoreDNS(dep) && !under(rel, "plugin") && !under(rel, "coredns-build"):
				t.Errorf("%s imports %s: only plugin/ and coredns-build/ may import CoreDNS", rel, dep)
			case ours && under(rel, "plugin") && under(depRel, "agents"):
				t.Errorf("%s imports %s: plugin/ must not import agents/", rel, dep)
			case ours && under(rel, "agents") && under(depRel, "plugin"):
				t.Errorf("%s imports %s: agents/ must not import plugin/", rel, dep)
			}
		}
	}
	if checked == 0 {
		t.Fatal("go list returned no packages")
	}
}

func under(path, dir string) bool { return path == dir || strings.HasPrefix(path, dir+"/") }

func isCoreDNS(path string) bool {
	return strings.HasPrefix(path, "github.com/coredns/coredns") || strings.HasPrefix(path, "github.com/coredns/caddy")
}
