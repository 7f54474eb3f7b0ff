// Command kstatus prints the kstatus verdict (sigs.k8s.io/cli-utils/pkg/kstatus/status,
// the rules Flux and kpt use to judge whether a resource is healthy) for
// Kubernetes objects given as JSON, so the project's TypeScript tests can check
// that the status the controller writes reads the way those tools will read it.
//
//	kstatus < objects.json
//
// Input on stdin: one object or a JSON array of objects, each a complete
// Kubernetes object (apiVersion, kind, metadata, spec, status). Output: one
// JSON line per object, in input order:
//
//	{"name":"hello","status":"Current","message":"Resource is Ready"}
//
// When kstatus cannot compute a status from an object (a field of the wrong
// type), the line says Unknown with kstatus' error as the message, as the
// cli-utils status poller reports it. Input that is not JSON, not an object or
// array of objects, or an object without apiVersion, kind and metadata.name
// exits 2 with a message on stderr and prints nothing.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

// verdict is one output line.
type verdict struct {
	Name    string `json:"name"`
	Status  string `json:"status"`
	Message string `json:"message"`
}

func main() {
	objects, err := readObjects(os.Stdin)
	if err != nil {
		fmt.Fprintf(os.Stderr, "kstatus: %v\n", err)
		os.Exit(2)
	}
	out := json.NewEncoder(os.Stdout)
	for _, obj := range objects {
		if err := out.Encode(compute(obj)); err != nil {
			fmt.Fprintf(os.Stderr, "kstatus: writing the result: %v\n", err)
			os.Exit(1)
		}
	}
}

// readObjects parses stdin as one object or an array of objects. It uses
// apimachinery's JSON decoder, as the API machinery does for unstructured
// objects, so integers become int64: kstatus reads metadata.generation and
// status.observedGeneration with NestedInt64, which fails on float64.
func readObjects(r io.Reader) ([]*unstructured.Unstructured, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("reading stdin: %w", err)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, errors.New("stdin is empty (want one Kubernetes object or an array of them)")
	}
	var doc interface{}
	if err := utiljson.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("stdin is not valid JSON (want one Kubernetes object or an array of them): %w", err)
	}
	var items []interface{}
	switch v := doc.(type) {
	case map[string]interface{}:
		items = []interface{}{v}
	case []interface{}:
		items = v
	default:
		return nil, errors.New("stdin must hold a JSON object or an array of objects")
	}
	objects := make([]*unstructured.Unstructured, 0, len(items))
	for i, item := range items {
		obj, ok := item.(map[string]interface{})
		if !ok {
			return nil, fmt.Errorf("item %d is not a JSON object", i)
		}
		u := &unstructured.Unstructured{Object: obj}
		if err := checkIdentity(u); err != nil {
			return nil, fmt.Errorf("item %d: %w", i, err)
		}
		objects = append(objects, u)
	}
	return objects, nil
}

// checkIdentity requires the fields that make the input a Kubernetes object
// and name the output line.
func checkIdentity(u *unstructured.Unstructured) error {
	for _, field := range [][]string{{"apiVersion"}, {"kind"}, {"metadata", "name"}} {
		v, found, err := unstructured.NestedString(u.Object, field...)
		if err != nil {
			return fmt.Errorf("%v: %w", field, err)
		}
		if !found || v == "" {
			return fmt.Errorf("missing %s (each item must be a complete Kubernetes object)", strings.Join(field, "."))
		}
	}
	return nil
}

// compute runs kstatus on one object; an error from kstatus becomes Unknown.
func compute(u *unstructured.Unstructured) verdict {
	res, err := status.Compute(u)
	if err != nil {
		return verdict{Name: u.GetName(), Status: string(status.UnknownStatus), Message: err.Error()}
	}
	return verdict{Name: u.GetName(), Status: string(res.Status), Message: res.Message}
}
