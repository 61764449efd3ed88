package trace

import (
	"bytes"
	"strconv"
	"time"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// A decoder of Services and EndpointSlices as the API server prints them, for check's 20,000
// objects on a big cluster: encoding/json spends a second of CPU on them, reflecting on every
// field and reading every byte twice (it validates first). This one reads each byte once into
// the typed object, and only a narrow form: the fields kube-proxy's objects have, spelled as
// the API server spells them, once each; strings without escapes; integers as integers.
// Whatever else it meets, it gives up on, and the object is decoded by encoding/json instead
// (which also names the error of a bad one). A null for a field leaves it as it is, as
// encoding/json does: zero, since every field is new and given once (object skips it). So what it returns is what encoding/json
// returns for the same bytes, and what it accepts is valid JSON: FuzzFastObjectsAsEncodingJSON
// holds it to that.

// fastJSON reads b from i.
type fastJSON struct {
	b []byte
	i int
}

// maxUniqueKeys bounds the keys of one object whose duplicates are looked for (one by one): a
// struct has fewer; a longer object goes to encoding/json.
const maxUniqueKeys = 32

// fastService decodes a Service, or says it cannot (ok false).
func fastService(raw []byte) (s *corev1.Service, ok bool) {
	s = &corev1.Service{}
	d := &fastJSON{b: raw}
	ok = d.peek() == '{' && d.object(true, func(k []byte) bool {
		switch string(k) {
		case "kind":
			return d.strTo(&s.Kind)
		case "apiVersion":
			return d.strTo(&s.APIVersion)
		case "metadata":
			return d.meta(&s.ObjectMeta)
		case "spec":
			return d.serviceSpec(&s.Spec)
		case "status":
			return d.object(true, func(k []byte) bool {
				if string(k) != "loadBalancer" {
					return false // conditions
				}
				return d.object(true, func(k []byte) bool {
					return string(k) == "ingress" && list(d, &s.Status.LoadBalancer.Ingress, d.ingress)
				})
			})
		}
		return false
	})
	return s, ok && d.end()
}

// fastEndpointSlice decodes an EndpointSlice, or says it cannot (ok false).
func fastEndpointSlice(raw []byte) (e *discoveryv1.EndpointSlice, ok bool) {
	e = &discoveryv1.EndpointSlice{}
	d := &fastJSON{b: raw}
	ok = d.peek() == '{' && d.object(true, func(k []byte) bool {
		switch string(k) {
		case "kind":
			return d.strTo(&e.Kind)
		case "apiVersion":
			return d.strTo(&e.APIVersion)
		case "metadata":
			return d.meta(&e.ObjectMeta)
		case "addressType":
			return d.strTo((*string)(&e.AddressType))
		case "endpoints":
			return list(d, &e.Endpoints, d.endpoint)
		case "ports":
			return list(d, &e.Ports, func(p *discoveryv1.EndpointPort) bool {
				return d.object(true, func(k []byte) bool {
					switch string(k) {
					case "name":
						return strPtr(d, &p.Name)
					case "protocol":
						return strPtr(d, &p.Protocol)
					case "port":
						return d.int32Ptr(&p.Port)
					case "appProtocol":
						return strPtr(d, &p.AppProtocol)
					}
					return false
				})
			})
		}
		return false
	})
	return e, ok && d.end()
}

func (d *fastJSON) meta(m *metav1.ObjectMeta) bool {
	return d.object(true, func(k []byte) bool {
		switch string(k) {
		case "name":
			return d.strTo(&m.Name)
		case "generateName":
			return d.strTo(&m.GenerateName)
		case "namespace":
			return d.strTo(&m.Namespace)
		case "uid":
			return d.strTo((*string)(&m.UID))
		case "resourceVersion":
			return d.strTo(&m.ResourceVersion)
		case "generation":
			n, ok := d.integer(64)
			m.Generation = n
			return ok
		case "creationTimestamp":
			// As metav1.Time's UnmarshalJSON reads it.
			s, ok := d.rawString()
			if !ok {
				return false
			}
			t, err := time.Parse(time.RFC3339, string(s))
			m.CreationTimestamp = metav1.Time{Time: t.Local()}
			return err == nil
		case "labels":
			return d.strMap(&m.Labels)
		case "annotations":
			return d.strMap(&m.Annotations)
		case "finalizers":
			return strList(d, &m.Finalizers)
		case "ownerReferences":
			return list(d, &m.OwnerReferences, func(o *metav1.OwnerReference) bool {
				return d.object(true, func(k []byte) bool {
					switch string(k) {
					case "apiVersion":
						return d.strTo(&o.APIVersion)
					case "kind":
						return d.strTo(&o.Kind)
					case "name":
						return d.strTo(&o.Name)
					case "uid":
						return d.strTo((*string)(&o.UID))
					case "controller":
						return d.boolPtr(&o.Controller)
					case "blockOwnerDeletion":
						return d.boolPtr(&o.BlockOwnerDeletion)
					}
					return false
				})
			})
		}
		return false // deletion, managed fields, the deprecated selfLink
	})
}

func (d *fastJSON) serviceSpec(s *corev1.ServiceSpec) bool {
	return d.object(true, func(k []byte) bool {
		switch string(k) {
		case "ports":
			return list(d, &s.Ports, d.servicePort)
		case "selector":
			return d.strMap(&s.Selector)
		case "clusterIP":
			return d.strTo(&s.ClusterIP)
		case "clusterIPs":
			return strList(d, &s.ClusterIPs)
		case "type":
			return d.strTo((*string)(&s.Type))
		case "externalIPs":
			return strList(d, &s.ExternalIPs)
		case "sessionAffinity":
			return d.strTo((*string)(&s.SessionAffinity))
		case "loadBalancerIP":
			return d.strTo(&s.LoadBalancerIP)
		case "loadBalancerSourceRanges":
			return strList(d, &s.LoadBalancerSourceRanges)
		case "externalName":
			return d.strTo(&s.ExternalName)
		case "externalTrafficPolicy":
			return d.strTo((*string)(&s.ExternalTrafficPolicy))
		case "healthCheckNodePort":
			return d.int32To(&s.HealthCheckNodePort)
		case "publishNotReadyAddresses":
			return d.boolTo(&s.PublishNotReadyAddresses)
		case "sessionAffinityConfig":
			c := &corev1.SessionAffinityConfig{}
			s.SessionAffinityConfig = c
			return d.object(true, func(k []byte) bool {
				if string(k) != "clientIP" {
					return false
				}
				ip := &corev1.ClientIPConfig{}
				c.ClientIP = ip
				return d.object(true, func(k []byte) bool {
					return string(k) == "timeoutSeconds" && d.int32Ptr(&ip.TimeoutSeconds)
				})
			})
		case "ipFamilies":
			return strList(d, &s.IPFamilies)
		case "ipFamilyPolicy":
			return strPtr(d, &s.IPFamilyPolicy)
		case "allocateLoadBalancerNodePorts":
			return d.boolPtr(&s.AllocateLoadBalancerNodePorts)
		case "loadBalancerClass":
			return strPtr(d, &s.LoadBalancerClass)
		case "internalTrafficPolicy":
			return strPtr(d, &s.InternalTrafficPolicy)
		case "trafficDistribution":
			return strPtr(d, &s.TrafficDistribution)
		}
		return false
	})
}

func (d *fastJSON) servicePort(p *corev1.ServicePort) bool {
	return d.object(true, func(k []byte) bool {
		switch string(k) {
		case "name":
			return d.strTo(&p.Name)
		case "protocol":
			return d.strTo((*string)(&p.Protocol))
		case "appProtocol":
			return strPtr(d, &p.AppProtocol)
		case "port":
			return d.int32To(&p.Port)
		case "nodePort":
			return d.int32To(&p.NodePort)
		case "targetPort":
			// As intstr.IntOrString's UnmarshalJSON reads it.
			if d.peek() == '"' {
				p.TargetPort.Type = intstr.String
				return d.strTo(&p.TargetPort.StrVal)
			}
			p.TargetPort.Type = intstr.Int
			return d.int32To(&p.TargetPort.IntVal)
		}
		return false
	})
}

func (d *fastJSON) ingress(in *corev1.LoadBalancerIngress) bool {
	return d.object(true, func(k []byte) bool {
		switch string(k) {
		case "ip":
			return d.strTo(&in.IP)
		case "hostname":
			return d.strTo(&in.Hostname)
		case "ipMode":
			return strPtr(d, &in.IPMode)
		}
		return false // ports
	})
}

func (d *fastJSON) endpoint(e *discoveryv1.Endpoint) bool {
	return d.object(true, func(k []byte) bool {
		switch string(k) {
		case "addresses":
			return strList(d, &e.Addresses)
		case "conditions":
			return d.object(true, func(k []byte) bool {
				switch string(k) {
				case "ready":
					return d.boolPtr(&e.Conditions.Ready)
				case "serving":
					return d.boolPtr(&e.Conditions.Serving)
				case "terminating":
					return d.boolPtr(&e.Conditions.Terminating)
				}
				return false
			})
		case "hostname":
			return strPtr(d, &e.Hostname)
		case "nodeName":
			return strPtr(d, &e.NodeName)
		case "zone":
			return strPtr(d, &e.Zone)
		case "deprecatedTopology":
			return d.strMap(&e.DeprecatedTopology)
		case "targetRef":
			r := &corev1.ObjectReference{}
			e.TargetRef = r
			return d.object(true, func(k []byte) bool {
				switch string(k) {
				case "kind":
					return d.strTo(&r.Kind)
				case "namespace":
					return d.strTo(&r.Namespace)
				case "name":
					return d.strTo(&r.Name)
				case "uid":
					return d.strTo((*string)(&r.UID))
				case "apiVersion":
					return d.strTo(&r.APIVersion)
				case "resourceVersion":
					return d.strTo(&r.ResourceVersion)
				case "fieldPath":
					return d.strTo(&r.FieldPath)
				}
				return false
			})
		}
		return false // hints
	})
}

// peek returns the next byte after spaces (0 at the end), not consuming it.
func (d *fastJSON) peek() byte {
	for d.i < len(d.b) {
		switch c := d.b[d.i]; c {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return c
		}
	}
	return 0
}

// null reads a null, if that is what comes next.
func (d *fastJSON) null() bool {
	if d.peek() == 'n' && bytes.HasPrefix(d.b[d.i:], []byte("null")) {
		d.i += 4
		return true
	}
	return false
}

// end says only spaces are left.
func (d *fastJSON) end() bool { return d.peek() == 0 && d.i == len(d.b) }

// object reads an object, calling field with each key (a slice of the input) to read the value
// that follows. unique says it is a struct: a key seen before is refused (encoding/json would
// merge the two values), and a null value is skipped, the field left zero (encoding/json leaves
// a field alone for null, and ignores a key it has no field for). A null where an object
// stands (a list's element) reads as an empty one.
func (d *fastJSON) object(unique bool, field func(key []byte) bool) bool {
	if d.null() {
		return true
	}
	if d.peek() != '{' {
		return false
	}
	d.i++
	if d.peek() == '}' {
		d.i++
		return true
	}
	var seenBuf [maxUniqueKeys][]byte
	seen := seenBuf[:0]
	for {
		key, ok := d.rawString()
		if !ok {
			return false
		}
		if unique {
			if len(seen) == maxUniqueKeys {
				return false
			}
			for _, k := range seen {
				if bytes.Equal(k, key) {
					return false
				}
			}
			seen = append(seen, key)
		}
		if d.peek() != ':' {
			return false
		}
		d.i++
		if !(unique && d.null()) && !field(key) {
			return false
		}
		switch d.peek() {
		case ',':
			d.i++
		case '}':
			d.i++
			return true
		default:
			return false
		}
	}
}

// list reads an array into *out (empty, not nil, for []: as encoding/json does), each element
// by elem.
func list[T any](d *fastJSON, out *[]T, elem func(*T) bool) bool {
	if d.peek() != '[' {
		return false
	}
	d.i++
	s := []T{}
	if d.peek() == ']' {
		d.i++
		*out = s
		return true
	}
	for {
		var v T
		if !elem(&v) {
			return false
		}
		s = append(s, v)
		switch d.peek() {
		case ',':
			d.i++
		case ']':
			d.i++
			*out = s
			return true
		default:
			return false
		}
	}
}

// rawString reads a string without escapes or control characters, in valid UTF-8.
func (d *fastJSON) rawString() ([]byte, bool) {
	if d.peek() != '"' {
		return nil, false
	}
	start, high := d.i+1, false
	for j := start; j < len(d.b); j++ {
		switch c := d.b[j]; {
		case c == '"':
			s := d.b[start:j]
			if high && !utf8.Valid(s) {
				return nil, false // encoding/json would replace the bad bytes
			}
			d.i = j + 1
			return s, true
		case c == '\\' || c < 0x20:
			return nil, false
		case c >= utf8.RuneSelf:
			high = true
		}
	}
	return nil, false
}

func (d *fastJSON) strTo(p *string) bool {
	s, ok := d.rawString()
	*p = string(s)
	return ok
}

func strPtr[T ~string](d *fastJSON, p **T) bool {
	s, ok := d.rawString()
	v := T(s)
	*p = &v
	return ok
}

func strList[T ~string](d *fastJSON, p *[]T) bool {
	return list(d, p, func(v *T) bool {
		if d.null() {
			return true
		}
		s, ok := d.rawString()
		*v = T(s)
		return ok
	})
}

// strMap reads an object of strings (labels); a key given twice is as encoding/json has it: the
// last value.
func (d *fastJSON) strMap(p *map[string]string) bool {
	m := map[string]string{}
	*p = m
	return d.object(false, func(k []byte) bool {
		if d.null() {
			m[string(k)] = ""
			return true
		}
		s, ok := d.rawString()
		m[string(k)] = string(s)
		return ok
	})
}

// integer reads an integer that fits bits: no fraction or exponent (encoding/json refuses those
// for an integer field).
func (d *fastJSON) integer(bits int) (int64, bool) {
	d.peek()
	j := d.i
	if j < len(d.b) && d.b[j] == '-' {
		j++
	}
	switch {
	case j >= len(d.b):
		return 0, false
	case d.b[j] == '0':
		j++
	case d.b[j] >= '1' && d.b[j] <= '9':
		for j < len(d.b) && d.b[j] >= '0' && d.b[j] <= '9' {
			j++
		}
	default:
		return 0, false
	}
	if j < len(d.b) && (d.b[j] == '.' || d.b[j] == 'e' || d.b[j] == 'E') {
		return 0, false
	}
	n, err := strconv.ParseInt(string(d.b[d.i:j]), 10, bits)
	if err != nil {
		return 0, false
	}
	d.i = j
	return n, true
}

func (d *fastJSON) int32To(p *int32) bool {
	n, ok := d.integer(32)
	*p = int32(n)
	return ok
}

func (d *fastJSON) int32Ptr(p **int32) bool {
	n, ok := d.integer(32)
	v := int32(n)
	*p = &v
	return ok
}

func (d *fastJSON) boolTo(p *bool) bool {
	d.peek()
	switch {
	case bytes.HasPrefix(d.b[d.i:], []byte("true")):
		*p, d.i = true, d.i+4
	case bytes.HasPrefix(d.b[d.i:], []byte("false")):
		*p, d.i = false, d.i+5
	default:
		return false
	}
	return true
}

func (d *fastJSON) boolPtr(p **bool) bool {
	var v bool
	*p = &v
	return d.boolTo(&v)
}
