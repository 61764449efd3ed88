package trace

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"sigs.k8s.io/yaml"
)

// recordedObjects are the Services and EndpointSlices of every cluster recorded from a real
// kube-proxy in this repository (the demo snapshots and kube-proxy's recorded versions), as JSON:
// the form `kubectl get -o json` prints.
func recordedObjects(t testing.TB) (kinds []string, raws [][]byte) {
	t.Helper()
	files, _ := filepath.Glob("kubeproxy/testdata/*/objects.yaml")
	demos, _ := filepath.Glob("../dataplane/snapshot/demo*/objects.yaml")
	files = append(files, demos...)
	if len(files) < 5 {
		t.Fatalf("found only %d recorded objects files", len(files))
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, doc := range splitYAML(data) {
			raw, err := yaml.YAMLToJSON(doc.text)
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			items, err := collectItem(nil, raw, f, 0)
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			for _, it := range items {
				if it.kind == "Service" || it.kind == "EndpointSlice" {
					kinds, raws = append(kinds, it.kind), append(raws, it.raw)
				}
			}
		}
	}
	return kinds, raws
}

// fastAsStd decodes raw as a kind both ways: whether the fast decoder took it, and, when it did,
// an error unless encoding/json decodes the same bytes to the same object.
func fastAsStd(kind string, raw []byte) (bool, error) {
	var fast, std any
	var ok bool
	switch kind {
	case "Service":
		fast, ok = fastService(raw)
		std = &corev1.Service{}
	default:
		fast, ok = fastEndpointSlice(raw)
		std = &discoveryv1.EndpointSlice{}
	}
	if !ok {
		return false, nil
	}
	if !json.Valid(raw) {
		return true, fmt.Errorf("the fast decoder took JSON encoding/json calls invalid: %q", raw)
	}
	if err := json.Unmarshal(raw, std); err != nil {
		return true, fmt.Errorf("the fast decoder took what encoding/json refuses (%v): %q", err, raw)
	}
	if !reflect.DeepEqual(fast, std) {
		return true, fmt.Errorf("decoded differently from encoding/json: %q\nfast %+v\nstd  %+v", raw, fast, std)
	}
	return true, nil
}

// TestFastObjectsAsEncodingJSON: every recorded Service and EndpointSlice is decoded by the fast
// decoder, to the object encoding/json makes of it; and what it does not take (escapes, null,
// numbers with fractions, unknown or repeated fields, bad UTF-8) it leaves to encoding/json,
// so DecodeObjects' answer is encoding/json's either way.
func TestFastObjectsAsEncodingJSON(t *testing.T) {
	kinds, raws := recordedObjects(t)
	for i, raw := range raws {
		ok, err := fastAsStd(kinds[i], raw)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			t.Errorf("the fast decoder did not take a recorded %s: %s", kinds[i], raw)
		}
	}
	t.Logf("%d recorded objects", len(raws))

	svc := `{"kind":"Service","apiVersion":"v1","metadata":{"name":"a","namespace":"ns","labels":{"x":"1"},"creationTimestamp":"2026-12-03T14:49:45Z"},` +
		`"spec":{"clusterIP":"10.96.0.10","ports":[{"name":"dns","port":53,"protocol":"UDP","targetPort":53}],"sessionAffinityConfig":{"clientIP":{"timeoutSeconds":10800}}}}`
	if ok, err := fastAsStd("Service", []byte(svc)); !ok || err != nil {
		t.Fatalf("the base case: taken %v, %v", ok, err)
	}
	for _, tc := range []struct{ from, to string }{
		{`"name":"a"`, `"name":"\u0061"`},                     // an escape
		{`"name":"a"`, `"name":"a","name":"b"`},               // a field twice
		{`"metadata":{`, `"metadata":{"Name":"b",`},           // another spelling of a field
		{`"clusterIP":"10.96.0.10"`, `"clusterIP":nul`},       // not JSON
		{`"port":53`, `"port":53.0`},                          // a fraction
		{`"port":53`, `"port":1e2`},                           // an exponent
		{`"port":53`, `"port":99999999999`},                   // out of range: encoding/json's error
		{`"port":53`, `"port":053`},                           // not JSON
		{`"labels":{"x":"1"}`, "\"labels\":{\"x\":\"\xff\"}"}, // not UTF-8: encoding/json replaces it
		{`"labels":{"x":"1"}`, `"labels":{"x":"\xff"}`},       // not JSON
		{`"spec":{`, `"spec":{"unknown":1,`},                  // a field it does not know
		{`"creationTimestamp":"2026-12-03T14:49:45Z"`, `"creationTimestamp":"yesterday"`},
		{`}}}}`, `}}}} x`},
	} {
		raw := strings.Replace(svc, tc.from, tc.to, 1)
		if raw == svc {
			t.Fatalf("%s not in the base case", tc.from)
		}
		ok, err := fastAsStd("Service", []byte(raw))
		if ok || err != nil {
			t.Errorf("%s: taken %v, %v", tc.to, ok, err)
		}
		// What encoding/json takes, DecodeObjects decodes as encoding/json does. (What it
		// refuses, DecodeObjects reads as YAML, as before.)
		var s corev1.Service
		if json.Unmarshal([]byte(raw), &s) != nil || validObject(&s) != nil {
			continue
		}
		cl, err := DecodeObjects([]byte(raw))
		if err != nil || len(cl.Services) != 1 || !reflect.DeepEqual(cl.Services[0], &s) {
			t.Errorf("%s: DecodeObjects %v, not encoding/json's object", tc.to, err)
		}
	}
	// Taken, as encoding/json has them: a label given twice (the last wins), and nulls (the
	// field stays zero: nil for a pointer, a list or a map).
	for _, tc := range []struct{ from, to string }{
		{`"x":"1"`, `"x":"1","x":"2"`},
		{`"x":"1"`, `"x":null`},
		{`"clusterIP":"10.96.0.10"`, `"clusterIP":null,"clusterIPs":null,"ipFamilyPolicy":null`},
		{`"targetPort":53`, `"targetPort":null`},
		{`{"clientIP":{"timeoutSeconds":10800}}`, `null`},
		{`"creationTimestamp":"2026-12-03T14:49:45Z"`, `"creationTimestamp":null,"annotations":null`},
		{`"ports":[{`, `"ports":[null,{`},
	} {
		raw := strings.Replace(svc, tc.from, tc.to, 1)
		if ok, err := fastAsStd("Service", []byte(raw)); !ok || err != nil {
			t.Errorf("%s: taken %v, %v", tc.to, ok, err)
		}
	}
}

// FuzzFastObjectsAsEncodingJSON: whatever the fast decoder takes is valid JSON that encoding/json
// decodes to the same object.
func FuzzFastObjectsAsEncodingJSON(f *testing.F) {
	kinds, raws := recordedObjects(f)
	for i, raw := range raws {
		f.Add(kinds[i] == "Service", raw)
	}
	f.Fuzz(func(t *testing.T, service bool, raw []byte) {
		kind := "EndpointSlice"
		if service {
			kind = "Service"
		}
		if _, err := fastAsStd(kind, raw); err != nil {
			t.Fatal(err)
		}
	})
}
