package trace

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// A scan of one JSON object's top level: enough to find an object's kind and a List's items
// without unmarshalling them. It is not a validator (DecodeObjects validates what it keeps and
// what it skips), but it checks every index and refuses what it does not expect, never reading
// out of bounds.

var errScan = errors.New("malformed JSON")

// objectHead returns the "kind" of the JSON object raw (matched as encoding/json matches a field:
// without regard to case, the last one winning) and where its "items" are, raw[from:to] (from
// is -1 when they are absent or null). Nothing but spaces may follow the object.
func objectHead(raw []byte) (kind string, from, to int, err error) {
	from, to = -1, -1
	if i := skipSpace(raw, 0); i >= len(raw) || raw[i] != '{' {
		return "", 0, 0, fmt.Errorf("not a Kubernetes object (not a JSON object)")
	}
	err = EachJSONField(raw, func(key []byte, vstart, vend int) error {
		val := raw[vstart:vend]
		switch {
		case bytes.EqualFold(key, []byte("kind")):
			var err error
			if kind, err = jsonString(val); err != nil {
				return fmt.Errorf("kind: %w", err)
			}
		case bytes.EqualFold(key, []byte("items")):
			switch {
			case string(val) == "null":
				from, to = -1, -1
			case len(val) > 0 && val[0] == '[':
				from, to = vstart, vend
			default:
				return fmt.Errorf("items is not a list")
			}
		}
		return nil
	})
	if err != nil {
		return "", 0, 0, err
	}
	return kind, from, to, nil
}

// EachJSONField calls fn with each key of the JSON object raw (unescaped) and where its value is,
// raw[from:to], in order. Nothing but spaces may follow the object. It checks the object's
// structure, not its values: a caller decodes (and so validates) what it keeps, and validates
// what it skips.
func EachJSONField(raw []byte, fn func(key []byte, from, to int) error) error {
	i := skipSpace(raw, 0)
	if i >= len(raw) || raw[i] != '{' {
		return fmt.Errorf("not a JSON object")
	}
	i = skipSpace(raw, i+1)
	if i < len(raw) && raw[i] == '}' {
		return end(raw, i+1)
	}
	for {
		if i >= len(raw) || raw[i] != '"' {
			return errScan
		}
		kend, err := skipString(raw, i)
		if err != nil {
			return err
		}
		key := raw[i+1 : kend-1]
		if bytes.IndexByte(key, '\\') >= 0 {
			var k string
			if json.Unmarshal(raw[i:kend], &k) != nil {
				return errScan
			}
			key = []byte(k)
		}
		i = skipSpace(raw, kend)
		if i >= len(raw) || raw[i] != ':' {
			return errScan
		}
		vstart := skipSpace(raw, i+1)
		vend, err := skipValue(raw, vstart)
		if err != nil {
			return err
		}
		if err := fn(key, vstart, vend); err != nil {
			return err
		}
		i = skipSpace(raw, vend)
		if i >= len(raw) {
			return errScan
		}
		if raw[i] == '}' {
			return end(raw, i+1)
		}
		if raw[i] != ',' {
			return errScan
		}
		i = skipSpace(raw, i+1)
	}
}

// end checks that only spaces follow raw[i].
func end(raw []byte, i int) error {
	if skipSpace(raw, i) != len(raw) {
		return errScan
	}
	return nil
}

// jsonString is the value of a JSON string (null is ""), unescaped only when it has escapes.
func jsonString(val []byte) (string, error) {
	if string(val) == "null" {
		return "", nil
	}
	if len(val) < 2 || val[0] != '"' {
		return "", fmt.Errorf("not a string")
	}
	if bytes.IndexByte(val, '\\') < 0 {
		return string(val[1 : len(val)-1]), nil
	}
	var s string
	err := json.Unmarshal(val, &s)
	return s, err
}

// EachJSONElement calls fn with the text of each element of the JSON array list, in order
// (nothing for a nil list). Like EachJSONField, it checks structure, not values.
func EachJSONElement(list []byte, fn func(el []byte) error) error {
	if list == nil {
		return nil
	}
	i := skipSpace(list, 0)
	if i >= len(list) || list[i] != '[' {
		return errScan
	}
	i = skipSpace(list, i+1)
	if i < len(list) && list[i] == ']' {
		return nil
	}
	for {
		end, err := skipValue(list, i)
		if err != nil {
			return err
		}
		if err := fn(list[i:end]); err != nil {
			return err
		}
		i = skipSpace(list, end)
		if i >= len(list) {
			return errScan
		}
		if list[i] == ']' {
			return nil
		}
		if list[i] != ',' {
			return errScan
		}
		i = skipSpace(list, i+1)
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\n' || b[i] == '\t' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index just past the JSON string that starts at b[i] ('"'). A control
// character, which JSON does not allow in a string, is an error.
func skipString(b []byte, i int) (int, error) {
	for i++; i < len(b); i++ {
		switch c := b[i]; {
		case c == '\\':
			i++
		case c == '"':
			return i + 1, nil
		case c < 0x20:
			return 0, errScan
		}
	}
	return 0, errScan
}

// skipValue returns the index just past the JSON value that starts at b[i].
func skipValue(b []byte, i int) (int, error) {
	if i >= len(b) {
		return 0, errScan
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for ; i < len(b); i++ {
			switch b[i] {
			case '"':
				end, err := skipString(b, i)
				if err != nil {
					return 0, err
				}
				i = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1, nil
				}
			}
		}
		return 0, errScan
	default: // a number, true, false or null
		start := i
		for i < len(b) && b[i] != ',' && b[i] != '}' && b[i] != ']' && b[i] != ' ' && b[i] != '\n' && b[i] != '\t' && b[i] != '\r' {
			i++
		}
		if i == start {
			return 0, errScan
		}
		return i, nil
	}
}

// JSONValueEnd returns the index just past the JSON value that starts at b[i] (after spaces),
// checking structure as EachJSONElement does; an error when b ends before the value does, or
// the value is malformed. A reader of a growing document asks again when more has arrived.
func JSONValueEnd(b []byte, i int) (int, error) {
	return skipValue(b, skipSpace(b, i))
}

// SkipJSONSpace returns the index of the first byte at or after b[i] that is not JSON space.
func SkipJSONSpace(b []byte, i int) int {
	return skipSpace(b, i)
}
