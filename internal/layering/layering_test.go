// Package layering holds one test: that the packages import each other
// only the way their doc comments and the README's Layout say, so data
// flows one way (schema ← ingest, query, replay; cmd wires).
package layering

import (
	"go/build"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/dodev/hindsight/"

// allowed says which of the module's packages each may import (their
// non-test files); a package not listed may import none of them.
var allowed = map[string][]string{
	"schema":         nil,
	"replay/webhook": nil,
	"ingest":         {"schema", "internal/recent"},
	"query":          {"schema", "internal/httpapi", "internal/keys"},
	"replay":         {"schema", "replay/webhook", "internal/httpapi", "internal/keys", "internal/recent"},
}

func TestPackagesImportDownward(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	imports := map[string][]string{} // package → the module's packages it imports
	err = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		if name := d.Name(); path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "node_modules") {
			return filepath.SkipDir
		}
		pkg, err := build.Default.ImportDir(path, 0)
		if err != nil {
			return nil // no Go files here, or only tests
		}
		rel, _ := filepath.Rel(root, path)
		for _, imp := range pkg.Imports {
			if dep, ok := strings.CutPrefix(imp, module); ok {
				imports[filepath.ToSlash(rel)] = append(imports[filepath.ToSlash(rel)], dep)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(imports["replay"]) == 0 || len(imports["cmd/hindsight"]) == 0 {
		t.Fatalf("the walk found too little: %v", imports)
	}
	for pkg, deps := range imports {
		for _, dep := range deps {
			switch rule, ruled := allowed[pkg]; {
			case strings.HasPrefix(dep, "cmd/"):
				t.Errorf("%s imports %s: nothing imports a command", pkg, dep)
			case ruled && !slices.Contains(rule, dep):
				t.Errorf("%s imports %s: it may import only %v", pkg, dep, rule)
			case !ruled && !strings.HasPrefix(pkg, "cmd/") && !strings.HasPrefix(pkg, "internal/") && dep != "schema":
				t.Errorf("%s imports %s: a package outside cmd and internal imports schema at most, unless listed", pkg, dep)
			}
		}
	}
	for pkg := range allowed {
		if _, err := os.Stat(filepath.Join(root, pkg)); err != nil {
			t.Errorf("%s: listed but not found", pkg)
		}
	}
}
