package main

import (
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/sessiond/sessiond"

// goPackages lists the module's packages with their imports of the module
// and of Fiber, as go list sees them.
func goPackages(t *testing.T) map[string][]string {
	t.Helper()
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	pkgs := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		pkgs[rel(f[0])] = nil
		for _, imp := range f[1:] {
			if strings.HasPrefix(imp, module) || strings.HasPrefix(imp, "github.com/gofiber/") {
				pkgs[rel(f[0])] = append(pkgs[rel(f[0])], rel(imp))
			}
		}
	}
	return pkgs
}

func rel(path string) string {
	if path == module {
		return "."
	}
	return strings.TrimPrefix(path, module+"/")
}

// ARCHITECTURE.md's code map names every package, and only those, and the
// import rules it states hold.
func TestArchitectureCodeMap(t *testing.T) {
	doc, err := os.ReadFile("ARCHITECTURE.md")
	if err != nil {
		t.Fatal(err)
	}
	var mapped []string
	tick := regexp.MustCompile("`([^`]+)`")
	for _, line := range strings.Split(string(doc), "\n") {
		if !strings.HasPrefix(line, "### ") {
			continue
		}
		for _, m := range tick.FindAllStringSubmatch(line, -1) {
			if p := strings.TrimSuffix(m[1], "/"); !strings.HasSuffix(p, ".go") {
				mapped = append(mapped, p)
			}
		}
	}
	pkgs := goPackages(t)
	var listed []string
	for p := range pkgs {
		listed = append(listed, p)
	}
	slices.Sort(listed)
	slices.Sort(mapped)
	if !slices.Equal(listed, mapped) {
		t.Errorf("ARCHITECTURE.md's code map names\n  %v\ngo list has\n  %v", mapped, listed)
	}

	domain := []string{"tokens", "sessions", "users", "admin", "audit", "app", "server"}
	for p, imps := range pkgs {
		for _, imp := range imps {
			fiber := strings.HasPrefix(imp, "github.com/gofiber/")
			switch {
			case strings.HasPrefix(p, "internal/") && slices.Contains(domain, imp):
				t.Errorf("%s imports the domain package %s: internal/ is plumbing only", p, imp)
			case fiber && p != "app" && p != "server" && p != "bench":
				t.Errorf("%s imports Fiber: only app/, server/ and bench/ know HTTP", p)
			case p == "tokens" && slices.Contains([]string{"sessions", "users", "app"}, imp):
				t.Errorf("tokens imports %s", imp)
			case (p == "sessions" || p == "users") && slices.Contains([]string{"sessions", "users", "app"}, imp) && imp != p:
				t.Errorf("%s imports %s", p, imp)
			}
		}
	}
}
