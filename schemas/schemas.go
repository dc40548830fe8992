// Package schemas holds idsync's published contracts: the JSON Schemas
// (draft 2020-12) of the input event, the connection configuration (as
// written and as stored) and the destination records, and the OpenAPI 3.1
// description of the admin API, which refers to them. The files are the
// contract; this package embeds them and compiles them with a 2020-12
// validator so that tests check idsync's real inputs and outputs against
// them (see README.md in this directory).
//
// The package does no I/O beyond its embedded files: a compiler it returns
// knows every file under its $id and loads nothing from the network.
// Nothing in the service imports it; its users are tests and tools.
package schemas

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"sigs.k8s.io/yaml"
)

//go:embed *.schema.json openapi.yaml
var files embed.FS

// BaseURL is the base of every schema's $id: a schema file name resolved
// against it is the schema's $id.
const BaseURL = "https://github.com/idsync/idsync/schemas/"

// The contract files.
const (
	// Event is the input audience-membership event (DESIGN.md §2).
	Event = "event.schema.json"
	// ConnectionConfig is a connection configuration as a client writes it
	// (the body of PUT …/connections/{destination}).
	ConnectionConfig = "connection-config.schema.json"
	// ConnectionConfigStored is a configuration with its defaults applied,
	// as stored and returned by the admin API.
	ConnectionConfigStored = "connection-config-stored.schema.json"
	// OutputRecord is the value of a destination record: the envelope and
	// its payload per destination type (DESIGN.md §6).
	OutputRecord = "output-record.schema.json"
	// OpenAPI is the OpenAPI 3.1 description of the admin API.
	OpenAPI = "openapi.yaml"
)

// NewCompiler returns a compiler that knows every contract file under its
// URL (BaseURL + file name; the OpenAPI document converted to JSON), asserts
// formats (a date-time must be RFC 3339) and refuses to load any other URL.
func NewCompiler() (*jsonschema.Compiler, error) {
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	c.UseLoader(noLoader{})
	names, err := fs.Glob(files, "*.schema.json")
	if err != nil {
		return nil, fmt.Errorf("listing schemas: %w", err)
	}
	for _, name := range append(names, OpenAPI) {
		doc, err := load(name)
		if err != nil {
			return nil, err
		}
		if err := c.AddResource(BaseURL+name, doc); err != nil {
			return nil, fmt.Errorf("adding %s: %w", name, err)
		}
	}
	return c, nil
}

// load reads a contract file as a JSON value (YAML converted to JSON).
func load(name string) (any, error) {
	raw, err := fs.ReadFile(files, name)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	if strings.HasSuffix(name, ".yaml") {
		if raw, err = yaml.YAMLToJSON(raw); err != nil {
			return nil, fmt.Errorf("converting %s to JSON: %w", name, err)
		}
	}
	doc, err := jsonschema.UnmarshalJSON(strings.NewReader(string(raw)))
	if err != nil {
		return nil, fmt.Errorf("decoding %s: %w", name, err)
	}
	return doc, nil
}

// noLoader refuses every URL the compiler was not given: a reference to
// anything but a contract file is an error, never a download.
type noLoader struct{}

func (noLoader) Load(url string) (any, error) {
	return nil, fmt.Errorf("%s is not a contract file of package schemas (nothing is loaded from outside)", url)
}

// Operation is one method and path template of the OpenAPI document.
type Operation struct {
	// Method is upper case, e.g. "GET".
	Method string
	// Path is the template as written, e.g. "/v1/preview".
	Path string
}

// String returns "METHOD path", as http.ServeMux patterns with a method
// read.
func (o Operation) String() string { return o.Method + " " + o.Path }

// API is the OpenAPI document, for looking up its operations and the
// schemas of their responses.
type API struct {
	doc map[string]any
}

// LoadAPI reads the OpenAPI document.
func LoadAPI() (*API, error) {
	doc, err := load(OpenAPI)
	if err != nil {
		return nil, err
	}
	m, ok := doc.(map[string]any)
	if !ok {
		return nil, errors.New("openapi.yaml is not an object")
	}
	return &API{doc: m}, nil
}

var methods = []string{http.MethodGet, http.MethodPut, http.MethodPost, http.MethodDelete, http.MethodPatch, http.MethodHead, http.MethodOptions}

// Operations returns every operation of the document, sorted by path then
// method.
func (a *API) Operations() []Operation {
	var ops []Operation
	paths, _ := a.doc["paths"].(map[string]any)
	for p, item := range paths {
		m, _ := item.(map[string]any)
		for _, method := range methods {
			if _, ok := m[strings.ToLower(method)]; ok {
				ops = append(ops, Operation{Method: method, Path: p})
			}
		}
	}
	sort.Slice(ops, func(i, j int) bool {
		if ops[i].Path != ops[j].Path {
			return ops[i].Path < ops[j].Path
		}
		return ops[i].Method < ops[j].Method
	})
	return ops
}

// operation returns op's object in the document, or nil.
func (a *API) operation(op Operation) map[string]any {
	paths, _ := a.doc["paths"].(map[string]any)
	item, _ := paths[op.Path].(map[string]any)
	o, _ := item[strings.ToLower(op.Method)].(map[string]any)
	return o
}

// Scope returns the x-idsync-scope of op: the token scope it needs.
func (a *API) Scope(op Operation) string {
	s, _ := a.operation(op)["x-idsync-scope"].(string)
	return s
}

// response returns op's response object for status, following a reference
// to #/components/responses, and its location in the document.
func (a *API) response(op Operation, status int) (map[string]any, string) {
	responses, _ := a.operation(op)["responses"].(map[string]any)
	code := strconv.Itoa(status)
	resp, _ := responses[code].(map[string]any)
	if resp == nil {
		return nil, ""
	}
	loc := "#/paths/" + escapePointer(op.Path) + "/" + strings.ToLower(op.Method) + "/responses/" + code
	if ref, ok := resp["$ref"].(string); ok {
		name, found := strings.CutPrefix(ref, "#/components/responses/")
		if !found {
			return nil, ""
		}
		comps, _ := a.doc["components"].(map[string]any)
		all, _ := comps["responses"].(map[string]any)
		resp, _ = all[name].(map[string]any)
		loc = ref
	}
	return resp, loc
}

// ResponseSchema returns the location of the JSON schema of
// op's response with status, relative to BaseURL (compile BaseURL+loc
// with NewCompiler's compiler); false when the document has no JSON response
// for that status.
func (a *API) ResponseSchema(op Operation, status int) (string, bool) {
	resp, loc := a.response(op, status)
	content, _ := resp["content"].(map[string]any)
	media, _ := content["application/json"].(map[string]any)
	if _, ok := media["schema"]; !ok {
		return "", false
	}
	return OpenAPI + loc + "/content/application~1json/schema", true
}

// RequestSchema returns the location of the JSON schema of op's request
// body, relative to BaseURL as ResponseSchema's; false when op takes no
// JSON body.
func (a *API) RequestSchema(op Operation) (string, bool) {
	body, _ := a.operation(op)["requestBody"].(map[string]any)
	content, _ := body["content"].(map[string]any)
	media, _ := content["application/json"].(map[string]any)
	if _, ok := media["schema"]; !ok {
		return "", false
	}
	return OpenAPI + "#/paths/" + escapePointer(op.Path) + "/" + strings.ToLower(op.Method) + "/requestBody/content/application~1json/schema", true
}

// RequiredResponseHeaders returns the names of the headers the document
// requires (required: true) in op's response with status, sorted.
func (a *API) RequiredResponseHeaders(op Operation, status int) []string {
	resp, _ := a.response(op, status)
	headers, _ := resp["headers"].(map[string]any)
	var names []string
	for name, h := range headers {
		if m, _ := h.(map[string]any); m["required"] == true {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names
}

// Statuses returns the response statuses the document gives op, sorted.
func (a *API) Statuses(op Operation) []int {
	responses, _ := a.operation(op)["responses"].(map[string]any)
	var out []int
	for code := range responses {
		if n, err := strconv.Atoi(code); err == nil {
			out = append(out, n)
		}
	}
	sort.Ints(out)
	return out
}

// escapePointer escapes a JSON pointer token (RFC 6901).
func escapePointer(s string) string {
	return strings.NewReplacer("~", "~0", "/", "~1").Replace(s)
}
