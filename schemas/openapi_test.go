package schemas_test

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/idsync/idsync/schemas"
)

// TestOpenAPIDocumentIsValid loads openapi.yaml with kin-openapi, an
// OpenAPI 3.1 implementation independent of the JSON Schema validator the
// other tests use, resolving its references to the schema files beside it
// (and nothing else), and validates it as an OpenAPI document: structure,
// parameters, responses, security schemes and the schemas it holds.
func TestOpenAPIDocumentIsValid(t *testing.T) {
	loader := openapi3.NewLoader()
	loader.IsExternalRefsAllowed = true
	loader.ReadFromURIFunc = func(_ *openapi3.Loader, u *url.URL) ([]byte, error) {
		if u.Scheme != "" && u.Scheme != "file" {
			return nil, fmt.Errorf("%s: only the contract files are read", u)
		}
		return os.ReadFile(filepath.Join(".", filepath.Base(u.Path)))
	}
	doc, err := loader.LoadFromFile(schemas.OpenAPI)
	if err != nil {
		t.Fatalf("loading openapi.yaml: %v", err)
	}
	if !doc.IsOpenAPI31OrLater() || doc.IsOpenAPI32OrLater() {
		t.Fatalf("openapi.yaml is OpenAPI %s, want 3.1", doc.OpenAPI)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("openapi.yaml is not a valid OpenAPI document: %v", err)
	}
	if n := len(doc.Paths.Map()); n < 5 {
		t.Fatalf("%d paths", n)
	}
}
