package schemas

import (
	"testing"
)

// TestCompile compiles every schema file and every schema of the OpenAPI
// document's responses: each is a valid 2020-12 schema whose references
// all resolve to contract files.
func TestCompile(t *testing.T) {
	for _, name := range []string{Event, ConnectionConfig, ConnectionConfigStored, OutputRecord} {
		if _, err := Compile(name); err != nil {
			t.Error(err)
		}
	}
	api, err := LoadAPI()
	if err != nil {
		t.Fatal(err)
	}
	ops := api.Operations()
	if len(ops) == 0 {
		t.Fatal("no operations in openapi.yaml")
	}
	for _, op := range ops {
		for _, status := range []int{200, 201, 400, 401, 403, 404, 409, 412, 413, 415, 500} {
			loc, ok := api.ResponseSchema(op, status)
			if !ok {
				continue
			}
			if _, err := Compile(loc); err != nil {
				t.Errorf("%s %d: %v", op, status, err)
			}
		}
	}
}
