package deploytest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestDist runs `make dist` as a release would: both binaries, static,
// named after git describe, with checksums that verify, and the version in
// the binary the one in its name.
func TestDist(t *testing.T) {
	if testing.Short() {
		t.Skip("cross-compiles two binaries")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	out, err := exec.Command("make", "-C", root, "dist", "DIST_DIR="+dir).CombinedOutput()
	if err != nil {
		t.Fatalf("make dist: %v\n%s", err, out)
	}
	desc, err := exec.Command("git", "-C", root, "describe", "--tags", "--always", "--dirty").Output()
	if err != nil {
		t.Fatalf("git describe: %v", err)
	}
	version := strings.TrimSpace(string(desc))
	for _, arch := range []string{"amd64", "arm64"} {
		name := filepath.Join(dir, "idsync-"+version+"-linux-"+arch)
		fi, err := os.Stat(name)
		if err != nil || fi.Size() < 1<<20 || fi.Mode()&0o111 == 0 {
			t.Errorf("%s: %v (size %d)", name, err, fi.Size())
		}
	}
	check := exec.Command("sha256sum", "-c", "SHA256SUMS")
	check.Dir = dir
	if out, err := check.CombinedOutput(); err != nil || strings.Count(string(out), ": OK") != 2 {
		t.Errorf("sha256sum -c: %v\n%s", err, out)
	}
	ver, err := exec.Command(filepath.Join(dir, "idsync-"+version+"-linux-amd64"), "version").Output()
	if err != nil || !strings.Contains(string(ver), "idsync "+version+" ") {
		t.Errorf("idsync version: %q, %v; want version %s", ver, err, version)
	}
	// Static: no dynamic section to resolve at run time.
	if out, _ := exec.Command("file", filepath.Join(dir, "idsync-"+version+"-linux-amd64")).Output(); len(out) > 0 && !strings.Contains(string(out), "statically linked") {
		t.Errorf("not statically linked: %s", out)
	}
}
