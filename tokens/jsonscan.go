package tokens

import "encoding/json"

// A JWT's header and claims are flat JSON objects of a few known members.
// Decoding them with encoding/json's reflection (into a map to check types,
// then again into a struct) cost most of a verification; this reads the
// members in one pass instead. It reads only what encoding/json.Valid has
// accepted, so it never has to reject malformed input itself: it only has
// to find where each member's name and value start and end.

// object walks the members of a JSON object, in order.
type object struct {
	s string
	i int
}

// newObject starts a walk over s, valid JSON; false unless s is an object.
func newObject(s string) (object, bool) {
	o := object{s: s}
	o.space()
	if o.i >= len(s) || s[o.i] != '{' {
		return object{}, false
	}
	o.i++
	return o, true
}

// next returns the next member: its name as encoding/json decodes it (so an
// escaped "\u0065xp" is "exp"), and its value as written, whitespace trimmed.
func (o *object) next() (name, value string, ok bool) {
	o.space()
	if o.i < len(o.s) && o.s[o.i] == ',' {
		o.i++
		o.space()
	}
	if o.i >= len(o.s) || o.s[o.i] != '"' {
		return "", "", false // '}': the end
	}
	end := stringEnd(o.s, o.i)
	name, _ = jsonString(o.s[o.i:end])
	o.i = end
	o.space()
	o.i++ // ':'
	o.space()
	start := o.i
	o.i = valueEnd(o.s, o.i)
	return name, o.s[start:o.i], true
}

func (o *object) space() {
	for o.i < len(o.s) {
		switch o.s[o.i] {
		case ' ', '\t', '\n', '\r':
			o.i++
		default:
			return
		}
	}
}

// stringEnd is the index just past the string literal starting at s[i].
func stringEnd(s string, i int) int {
	for i++; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++ // the escaped byte (of \uXXXX, the rest is plain)
		case '"':
			return i + 1
		}
	}
	return len(s)
}

// valueEnd is the index just past the value starting at s[i].
func valueEnd(s string, i int) int {
	if i >= len(s) {
		return i
	}
	switch s[i] {
	case '"':
		return stringEnd(s, i)
	case '{', '[':
		depth := 0
		for i < len(s) {
			switch s[i] {
			case '"':
				i = stringEnd(s, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return i
	}
	// A number, true, false or null: up to the next delimiter.
	for i < len(s) {
		switch s[i] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return i
		}
		i++
	}
	return i
}

// jsonString decodes a string literal as encoding/json does; false when v
// is another type. A plain ASCII literal (all of ours) is its own text, a
// substring of v: no copy. Escapes and non-ASCII bytes, whose decoding has
// rules of its own (surrogates, invalid UTF-8 becoming U+FFFD), go to
// encoding/json.
func jsonString(v string) (string, bool) {
	if len(v) < 2 || v[0] != '"' {
		return "", false
	}
	for i := 1; i < len(v)-1; i++ {
		if c := v[i]; c == '\\' || c >= 0x80 {
			var s string
			if json.Unmarshal([]byte(v), &s) != nil {
				return "", false
			}
			return s, true
		}
	}
	return v[1 : len(v)-1], true
}

// jsonStrings calls each with the strings of an array of strings; false
// unless v is one.
func jsonStrings(v string, each func(string)) bool {
	if len(v) == 0 || v[0] != '[' {
		return false
	}
	o := object{s: v, i: 1}
	for {
		o.space()
		if o.i < len(v) && v[o.i] == ',' {
			o.i++
			o.space()
		}
		if o.i >= len(v) || v[o.i] == ']' {
			return true
		}
		end := valueEnd(v, o.i)
		s, ok := jsonString(v[o.i:end])
		if !ok {
			return false
		}
		each(s)
		o.i = end
	}
}

// isJSONNumber reports whether v is a number literal (valid JSON is given).
func isJSONNumber(v string) bool {
	return len(v) > 0 && (v[0] == '-' || v[0] >= '0' && v[0] <= '9')
}
